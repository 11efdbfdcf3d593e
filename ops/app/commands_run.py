"""`skytide run`, `migrate` and `seed-demo`: start roles, prepare the database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ops.app.parser import roles_of
from ops.app.wiring import open_deps, run_async, running_system
from ops.settings import ALL_ROLES, Settings
from ops.system import services
from storage.db import migrate
from storage.keys import ORG_REGISTRY
from storage.seed import demo_today, seed_demo

log = logging.getLogger("skytide")


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "migrate":
        run_async(cmd_migrate(settings))
        return 0
    if args.command == "seed-demo":
        if why := demo_refused(settings):
            print(why, file=sys.stderr)
            return 2
        run_async(cmd_seed_demo(settings))
        return 0
    roles = roles_of(args)
    unknown = set(roles) - set(ALL_ROLES)
    if unknown:
        print(f"unknown role(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    if args.seed_demo and (why := demo_refused(settings)):
        print(why, file=sys.stderr)
        return 2
    run_async(cmd_run(settings, roles, args.seed_demo))
    return 0


async def cmd_run(settings: Settings, roles: tuple[str, ...], seed: bool) -> None:
    async with services(settings) as settings, open_deps(settings) as deps:
        # The ingress alone does not migrate: it must start, and answer webhooks from Redis,
        # while PostgreSQL is down (`skytide migrate`, or any worker, applies the migrations).
        if seed or set(roles) - {"ingress"}:
            await migrate(deps.pool)
        if seed:
            org = await seed_demo(deps.pool, today=demo_today(deps))
            await deps.redis.sadd(ORG_REGISTRY, org)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with running_system(settings, roles, deps=deps) as system:
            if settings.dev_chat_enabled:
                log.info("chat page: %s/  (POST /chat for scripts)", system.url)
            await stop.wait()
            log.info("stopping: draining in-flight work")


async def cmd_migrate(settings: Settings) -> None:
    async with services(settings) as settings, open_deps(settings) as deps:
        applied = await migrate(deps.pool)
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


async def cmd_seed_demo(settings: Settings) -> None:
    async with services(settings) as settings, open_deps(settings) as deps:
        await migrate(deps.pool)
        print(await seed_demo(deps.pool, today=demo_today(deps)))


def demo_refused(settings: Settings) -> str | None:
    """Why the demo clinic may not be seeded here, or None: it is for development only."""
    if not settings.dev_chat_enabled:
        return (
            "the demo clinic is for development only: set DEV_CHAT=true (as `make run` does) "
            "to seed it"
        )
    return None
