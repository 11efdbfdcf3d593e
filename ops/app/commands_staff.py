"""`skytide operator`, `webhook` and `bot`: the people and systems around the bot (the clinic's
team and its tokens, the CRM's webhook endpoints) and handing a chat to a person."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from ops.app.wiring import open_deps, run_async
from ops.settings import Settings
from ops.system import services
from storage import operators, webhooks
from storage.chats import switch_bot
from storage.db import migrate


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "operator":
        return run_async(cmd_operator(settings, args))
    if args.command == "webhook":
        return run_async(cmd_webhook(settings, args))
    return run_async(cmd_bot(settings, args))


async def cmd_operator(settings: Settings, args: argparse.Namespace) -> int:
    """Credentials of the clinic's team for the operator API and the inbox page."""
    async with services(settings) as settings, open_deps(settings) as deps:
        await migrate(deps.pool)
        if args.operator_command == "add":
            try:
                operator_id, token = await operators.add(deps.pool, args.org, args.name)
            except operators.BadOperator as exc:
                print(exc, file=sys.stderr)
                return 2
            print(f"operator {operator_id} ({args.name.strip()})")
            print(f"token: {token}")
            print(
                "the token is shown only now (only its SHA-256 is kept): give it to the person,"
                " who pastes it into /inbox or sends it as Authorization: Bearer"
            )
            return 0
        if args.operator_command == "revoke":
            if not await operators.revoke(deps.pool, args.org, args.id):
                print(f"no active operator {args.id} in organization {args.org}", file=sys.stderr)
                return 1
            print(f"operator {args.id} revoked")
            return 0
        found = await operators.list_operators(deps.pool, args.org)
        for op in found:
            state = f"revoked {op.revoked_at:%Y-%m-%d %H:%M}" if op.revoked_at else "active"
            used = f"{op.last_used_at:%Y-%m-%d %H:%M}" if op.last_used_at else "never"
            print(f"{op.id}  {op.name}  {state}  last used {used}")
        print(f"{len(found)} operator(s)")
        return 0


async def cmd_webhook(settings: Settings, args: argparse.Namespace) -> int:
    """The CRM's webhook endpoints of an organization (docs/operator-api.md)."""
    async with services(settings) as settings, open_deps(settings) as deps:
        await migrate(deps.pool)
        if args.webhook_command == "add":
            try:
                endpoint = await webhooks.add_endpoint(deps.pool, args.org, args.url)
            except webhooks.BadEndpoint as exc:
                print(exc, file=sys.stderr)
                return 2
            print(f"endpoint {endpoint.id} {endpoint.url}")
            print(f"secret: {endpoint.secret}")
            print(
                "the secret is shown only now: the receiver checks X-Skytide-Signature with it "
                '(docs/operator-api.md, "Webhooks for the CRM")'
            )
            return 0
        if args.webhook_command == "remove":
            if not (args.url or args.id):
                print("webhook remove needs --url or --id", file=sys.stderr)
                return 2
            removed = await webhooks.remove_endpoint(
                deps.pool, args.org, url=args.url, endpoint_id=args.id
            )
            if not removed:
                print(
                    f"no active endpoint {args.url or args.id} in organization {args.org}",
                    file=sys.stderr,
                )
                return 1
            print(f"removed {removed} endpoint(s)")
            return 0
        found = await webhooks.list_endpoints(deps.pool, args.org)
        for endpoint in found:
            print(f"{endpoint.id}  {endpoint.url}  added {endpoint.created_at:%Y-%m-%d %H:%M}")
        print(f"{len(found)} endpoint(s)")
        return 0


async def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    async with services(settings) as settings, open_deps(settings) as deps:
        enabled = args.action == "resume"
        reason = None if enabled else "paused from the command line"
        switch = await switch_bot(
            deps.pool,
            args.org,
            args.phone,
            enabled,
            reason=reason,
            at=datetime.fromtimestamp(deps.clock(), timezone.utc),
        )
        await webhooks.bot_switched(
            deps.redis,
            deps.pool,
            args.org,
            args.phone,
            switch,
            enabled=enabled,
            by="command line",
            reason=reason,
            now_ms=deps.now_ms(),
        )
        if switch is None:
            print(f"no chat with {args.phone} in organization {args.org}", file=sys.stderr)
            return 1
        print(f"bot {'resumed' if enabled else 'paused'} for {args.phone}")
        return 0
