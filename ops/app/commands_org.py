"""`skytide org`, `catalog`, `embed` and `reminders`: an organization's connection, settings,
catalogue and the data built from it."""

from __future__ import annotations

import argparse
import json
import sys

from graph.embeddings import backfill, build_embedder
from ops.app.wiring import open_deps, run_async
from ops.settings import Settings
from ops.system import services
from storage import catalog_export, catalog_file
from storage.db import migrate
from storage.keys import ORG_REGISTRY
from storage.org_settings import BadSetting, update
from storage.orgs import MIN_TOKEN_CHARS, add_org, publish_connections, webhook_token_of
from storage.reminders import plan_upcoming


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "catalog":
        return run_async(cmd_catalog(settings, args))
    if args.command == "embed":
        return run_async(cmd_embed(settings, args.org))
    if args.command == "reminders":
        return run_async(cmd_reminders(settings, args))
    if args.org_command == "set":
        return run_async(cmd_org_set(settings, args))
    if args.org_command == "token":
        return run_async(cmd_org_token(settings, args.gupshup_app))
    if args.webhook_token is not None and len(args.webhook_token.strip()) < MIN_TOKEN_CHARS:
        print(
            f"--webhook-token must have at least {MIN_TOKEN_CHARS} characters "
            "(leave it out to get a random one)",
            file=sys.stderr,
        )
        return 2
    run_async(cmd_org_add(settings, args))
    return 0


async def cmd_org_add(settings: Settings, args: argparse.Namespace) -> None:
    async with services(settings) as settings, open_deps(settings) as deps:
        await migrate(deps.pool)
        org = await add_org(
            deps.pool,
            name=args.name,
            app_name=args.gupshup_app,
            api_key=args.gupshup_api_key,
            source_phone=args.source_phone,
            webhook_token=args.webhook_token,
            app_id=args.gupshup_app_id,
            timezone=args.timezone,
        )
        await deps.redis.sadd(ORG_REGISTRY, org)
        # The ingress answers the new app's webhooks from Redis, PostgreSQL up or not.
        await publish_connections(deps.redis, deps.pool, deps.now_ms())
        print(org)
        print(f"webhook token: {await webhook_token_of(deps.pool, args.gupshup_app)}")


async def cmd_org_token(settings: Settings, app_name: str) -> int:
    async with services(settings) as settings, open_deps(settings) as deps:
        token = await webhook_token_of(deps.pool, app_name)
    if token is None:
        print(f"no Gupshup app {app_name!r}", file=sys.stderr)
        return 1
    print(token)
    return 0


async def cmd_org_set(settings: Settings, args: argparse.Namespace) -> int:
    pairs = dict(p.partition("=")[::2] for p in args.values)
    async with services(settings) as settings, open_deps(settings) as deps:
        try:
            merged = await update(
                deps.pool, args.org, pairs, name=args.name, timezone=args.timezone
            )
        except BadSetting as exc:
            print(exc, file=sys.stderr)
            return 2
        await publish_connections(deps.redis, deps.pool, deps.now_ms())  # name, timezone
        print(json.dumps(merged, indent=2, ensure_ascii=False))
        return 0


async def cmd_catalog(settings: Settings, args: argparse.Namespace) -> int:
    async with services(settings) as settings, open_deps(settings) as deps:
        await migrate(deps.pool)
        if args.catalog_command == "export":
            try:
                print(
                    catalog_export.dump(await catalog_export.export_catalog(deps.pool, args.org)),
                    end="",
                )
            except LookupError as exc:
                print(exc, file=sys.stderr)
                return 1
            return 0
        try:
            with open(args.file, encoding="utf-8") as f:
                report = await catalog_file.import_catalog(
                    deps.pool, args.org, catalog_file.load(f.read())
                )
        except (OSError, catalog_file.BadCatalog) as exc:
            print(f"{args.file}: {exc}", file=sys.stderr)
            return 2
        print(report)
        embedder = build_embedder(settings)
        if embedder is not None:  # edited entries lost their embedding on import
            print(f"embedded {await backfill(deps.pool, embedder, args.org)} entries")
        return 0


async def cmd_embed(settings: Settings, org: str | None) -> int:
    embedder = build_embedder(settings)
    if embedder is None:
        print("EMBEDDING_MODEL is not set: the knowledge search is lexical only", file=sys.stderr)
        return 1
    async with services(settings) as settings, open_deps(settings) as deps:
        # The client decodes responses (storage/redis_client.py): the members are str.
        orgs = [org] if org else sorted(str(o) for o in await deps.redis.smembers(ORG_REGISTRY))
        for each in orgs:
            print(f"{each}: embedded {await backfill(deps.pool, embedder, each)} entries")
    return 0


async def cmd_reminders(settings: Settings, args: argparse.Namespace) -> int:
    async with services(settings) as settings, open_deps(settings) as deps:
        planned = await plan_upcoming(deps.redis, deps.pool, args.org, deps.now_ms())
        print(f"planned reminders for {planned} upcoming appointment(s) that had none")
        return 0
