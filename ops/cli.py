"""The `skytide` command and the composition root: the only place that wires every layer.

skytide run [--roles ingress,enrich,batcher,agent,sender,scheduler]
skytide migrate | seed-demo | org add|set ... | bot pause|resume ... | dlq list|show|replay ...
skytide operator add --org ID --name NAME | operator revoke --org ID --id ID | operator list --org ID
skytide catalog import FILE --org ID | catalog export --org ID | reminders plan --org ID
skytide webhook add|list|remove --org ID [--url URL]
skytide bench
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import socket
import sys
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

import aiohttp
from aiohttp import web

from ops.deps import Deps
from ops import http_phases, tracing
from ops.logs import setup_logging
from ops.settings import ALL_ROLES, ConfigError, Settings, invalid_lines, startup_problems
from ops.system import services

log = logging.getLogger("skytide")


def settle_heap() -> None:
    """Move everything alive after start-up (the libraries' modules, schemas, compiled graphs:
    about 240,000 objects) out of the garbage collector's reach. A full collection otherwise
    walks them all, a pause of about 140 ms that every turn in flight waits through (make bench)."""
    global _heap_settled
    if not _heap_settled:  # once per process: a second freeze would keep the garbage made since
        _heap_settled = True
        gc.collect()
        gc.freeze()


_heap_settled = False


@asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    """Redis, the PostgreSQL pool and the HTTP client, closed on the way out."""
    from storage.db import create_pool
    from storage.redis_client import create_redis

    if not (settings.redis_url and settings.database_url):
        raise ValueError("open_deps needs REDIS_URL and DATABASE_URL; use ops.system.services()")
    async with AsyncExitStack() as stack:
        redis = create_redis(settings.redis_url, cluster=settings.redis_cluster)
        stack.push_async_callback(redis.aclose)
        # DATABASE_POOL_MIN 0 (the default): no connection is opened here, so a process started
        # while PostgreSQL is down (an ingress restarted mid-outage) comes up and serves what
        # needs no database. DATABASE_POOL_MAX is this process's share of the connection budget.
        pool = await create_pool(
            settings.database_url,
            min_size=settings.database_pool_min,
            max_size=settings.database_pool_max,
            statement_cache_size=settings.database_statement_cache_size,
            command_timeout_s=settings.database_command_timeout_s,
            acquire_timeout_s=settings.database_acquire_timeout_s,
        )
        stack.push_async_callback(pool.close)
        # http_phases: a send to Gupshup knows whether it failed before or after it was written.
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200), trace_configs=[http_phases.trace_config()]
        )
        stack.push_async_callback(http.close)
        yield Deps(settings=settings, redis=redis, pool=pool, http=http)


def stage_config(settings: Settings, stage: str, stream: str):
    from consumers.runtime import StageConfig

    s = settings
    return StageConfig(
        stage=stage,
        stream=stream,
        concurrency=s.stage_concurrency,
        read_count=s.read_count,
        block_ms=s.block_ms,
        claim_idle_ms=s.claim_idle_ms,
        claim_every_s=s.claim_every_s,
        max_deliveries=s.max_deliveries,
        retry_attempts=s.retry_attempts,
        retry_base_s=s.retry_base_s,
        retry_max_s=s.retry_max_s,
        drain_timeout_s=s.drain_timeout_s,
        org_refresh_s=s.org_refresh_s,
        dead_letter_max_entries=s.dead_letter_max_entries,
        dead_letter_retention_days=s.dead_letter_retention_days,
        handler_timeout_s=s.handler_timeout_s,
        dependency_outage_max_s=s.dependency_outage_max_s,
        sweep_every_s=s.read_sweep_s,
    )


@dataclass
class RunningSystem:
    deps: Deps
    url: str
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def gupshup_api_url(settings: Settings) -> str:
    if settings.gupshup_api_url:
        return settings.gupshup_api_url
    if not settings.development:  # startup_problems refused this already; never the simulator
        raise ConfigError("GUPSHUP_API_URL is not set (SKYTIDE_ENV=production)")
    return f"http://{settings.http_host}:{settings.http_port}/simulator"


@asynccontextmanager
async def running_system(
    settings: Settings,
    roles: tuple[str, ...] = ALL_ROLES,
    deps: Deps | None = None,
    receptionist_builder: Callable[[Deps, Any], Any] | None = None,
) -> AsyncIterator[RunningSystem]:
    """Start the given roles in this process; on exit, stop reading and drain in-flight work.

    receptionist_builder(deps, checkpointer) replaces the receptionist (tests hold a turn).
    """
    # The agent's and enrich's modules (LangGraph, Pydantic AI, google-genai) are imported only
    # by a process that runs them: they take most of the start-up time (about 5 s of 7 here),
    # and an ingress restarted mid-outage should be back before the provider's retries run out.
    from consumers.batcher import Batcher
    from consumers.registry import keep_registry
    from consumers.scheduler import Scheduler
    from consumers.runtime import StageWorker
    from consumers.send_doubts import DoubtChecker
    from consumers.sender import SenderStage
    from ingress.app import create_app, runner_options

    async with AsyncExitStack() as stack:
        if deps is None:
            deps = await stack.enter_async_context(open_deps(settings))
        stop = asyncio.Event()
        system = RunningSystem(
            deps=deps, url=f"http://{settings.http_host}:{settings.http_port}", stop=stop
        )
        consumer = f"{socket.gethostname()}-{os.getpid()}-{id(system):x}"
        await stack.enter_async_context(observed(settings, deps, roles))
        if "ingress" in roles:
            from ops.metrics_server import ready_needs

            # /readyz and /metrics are on METRICS_PORT; on the public port only in development
            # with METRICS_PORT unset (production refuses that: exposure_problems).
            here = ready_needs(roles) if not settings.metrics_port else None
            runner = web.AppRunner(create_app(deps, here), **runner_options(deps))
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        workers = []
        if "enrich" in roles:
            from consumers.enrich import EnrichStage
            from consumers.understanding import build_understander

            understander = build_understander(deps)
            if hasattr(understander, "aclose"):
                stack.push_async_callback(understander.aclose)  # runs after the workers stopped
            enrich = EnrichStage(deps, understander=understander)
            workers.append(
                StageWorker(
                    deps.redis,
                    stage_config(settings, "enrich", "inbound"),
                    enrich.handle,
                    consumer,
                    on_dead_letter=enrich.dead_lettered,
                    outages=deps.outages,
                )
            )
        if "agent" in roles:
            from consumers.agent import AgentStage
            from graph.checkpoints import open_checkpointer
            from graph.receptionist import build_receptionist

            saver = await stack.enter_async_context(
                open_checkpointer(
                    settings.redis_url, settings.checkpoint_ttl_min, cluster=settings.redis_cluster
                )
            )
            receptionist = (receptionist_builder or build_receptionist)(deps, saver)
            if hasattr(receptionist, "aclose"):
                stack.push_async_callback(receptionist.aclose)  # runs after the workers stopped
            agent = AgentStage(deps, receptionist)
            workers.append(
                StageWorker(
                    deps.redis,
                    stage_config(settings, "agent", "turns"),
                    agent.handle,
                    consumer,
                    on_dead_letter=agent.dead_lettered,
                    outages=deps.outages,
                )
            )
        if "sender" in roles:
            sender = SenderStage(deps, gupshup_api_url(settings))
            workers.append(
                StageWorker(
                    deps.redis,
                    stage_config(settings, "sender", "outbound"),
                    sender.handle,
                    consumer,
                    on_dead_letter=sender.dead_lettered,
                    outages=deps.outages,
                )
            )
        if "scheduler" in roles:
            # The CRM's webhooks are delivered by the scheduler role (no role of their own).
            from consumers.webhooks import WebhookStage, stage_config as webhook_config

            hooks = WebhookStage(deps)
            workers.append(
                StageWorker(
                    deps.redis,
                    webhook_config(stage_config(settings, "webhooks", "webhooks"), deps),
                    hooks.handle,
                    consumer,
                    on_dead_letter=hooks.dead_lettered,
                    outages=deps.outages,
                )
            )
        for worker in workers:
            system.tasks.append(asyncio.create_task(worker.run(stop), name=worker.group))
        if set(roles) - {"ingress"}:
            system.tasks.append(
                asyncio.create_task(
                    keep_registry(
                        deps, stop, settings.org_refresh_s, settings.connections_refresh_s
                    ),
                    name="registry",
                )
            )
        if "batcher" in roles:
            system.tasks.append(asyncio.create_task(Batcher(deps).run(stop), name="batcher"))
        if "scheduler" in roles:
            system.tasks.append(asyncio.create_task(Scheduler(deps).run(stop), name="scheduler"))
        if "sender" in roles:
            # Sends in doubt whose grace ended go back to the sender for a decision.
            system.tasks.append(
                asyncio.create_task(DoubtChecker(deps).run(stop), name="send-doubts")
            )
        log.info("running roles %s (consumer %s) on %s", ",".join(roles), consumer, system.url)
        settle_heap()
        try:
            yield system
        finally:
            stop.set()
            results = await asyncio.gather(*system.tasks, return_exceptions=True)
            for task, result in zip(system.tasks, results):
                if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError
                ):
                    log.error("role %s ended with %r", task.get_name(), result)


@asynccontextmanager
async def observed(settings: Settings, deps: Deps, roles: tuple[str, ...]) -> AsyncIterator[None]:
    """Every process can be scraped: its roles, its dependencies' health and its stages'
    streams sampled at scrape time, and /metrics and /readyz on METRICS_PORT when it is set."""
    from consumers.stream_stats import StreamStats
    from ops import health, metrics, metrics_server

    for role in roles:
        metrics.roles.labels(role).set(1)
    removers = [
        metrics.add_sampler(lambda: health.check(deps)),
        metrics.add_sampler(StreamStats(deps.redis, list(roles))),
    ]
    if "scheduler" in roles:
        from consumers.scheduler import AttendanceStats

        from consumers.team_stats import WaitingForPerson

        removers.append(metrics.add_sampler(AttendanceStats(deps)))
        removers.append(metrics.add_sampler(WaitingForPerson(deps)))
    runner = None
    if settings.metrics_port:
        runner = await metrics_server.start(
            deps, settings.http_host, settings.metrics_port, metrics_server.ready_needs(roles)
        )
        log.info("metrics on http://%s:%d/metrics", settings.http_host, settings.metrics_port)
    try:
        yield
    finally:
        if runner is not None:
            await runner.cleanup()
        for remove in removers:
            remove()
        for role in roles:
            metrics.roles.labels(role).set(0)


def run_async(coroutine):
    """Run on uvloop (a faster event loop) where it is installed, else on asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


# ---- commands ---------------------------------------------------------------------------------


async def cmd_run(settings: Settings, roles: tuple[str, ...], seed: bool) -> None:
    from storage.db import migrate
    from storage.keys import ORG_REGISTRY
    from storage.seed import demo_today, seed_demo

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
    from storage.db import migrate

    async with services(settings) as settings, open_deps(settings) as deps:
        applied = await migrate(deps.pool)
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


async def cmd_seed_demo(settings: Settings) -> None:
    from storage.db import migrate
    from storage.seed import demo_today, seed_demo

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


async def cmd_org_add(settings: Settings, args: argparse.Namespace) -> None:
    from storage.db import migrate
    from storage.keys import ORG_REGISTRY
    from storage.orgs import add_org, publish_connections, webhook_token_of

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
    from storage.orgs import webhook_token_of

    async with services(settings) as settings, open_deps(settings) as deps:
        token = await webhook_token_of(deps.pool, app_name)
    if token is None:
        print(f"no Gupshup app {app_name!r}", file=sys.stderr)
        return 1
    print(token)
    return 0


async def cmd_org_set(settings: Settings, args: argparse.Namespace) -> int:
    from storage.org_settings import BadSetting, update
    from storage.orgs import publish_connections

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
    from graph.embeddings import backfill, build_embedder
    from storage import catalog_export, catalog_file
    from storage.db import migrate

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


async def cmd_clock(settings: Settings, args: argparse.Namespace) -> int:
    from storage.keys import DEV_CLOCK_OFFSET

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = (args.duration or "0s").strip()
    if args.action == "advance" and (
        text[-1:] not in units or not text[:-1].replace(".", "", 1).isdigit()
    ):
        print(f"{text!r}: expected a duration like 90m, 23h or 2d", file=sys.stderr)
        return 2
    async with services(settings) as settings, open_deps(settings) as deps:
        if args.action == "reset":
            await deps.redis.delete(DEV_CLOCK_OFFSET)
        elif args.action == "advance":
            await deps.redis.incrby(
                DEV_CLOCK_OFFSET, int(float(text[:-1]) * units[text[-1]] * 1000)
            )
        offset_s = int(await deps.redis.get(DEV_CLOCK_OFFSET) or 0) / 1000
        print(
            f"development clock: {offset_s / 3600:+.2f} h (followed by processes running the scheduler role with DEV_CLOCK=true)"
        )
        return 0


async def cmd_reminders(settings: Settings, args: argparse.Namespace) -> int:
    from storage.reminders import plan_upcoming

    async with services(settings) as settings, open_deps(settings) as deps:
        planned = await plan_upcoming(deps.redis, deps.pool, args.org, deps.now_ms())
        print(f"planned reminders for {planned} upcoming appointment(s) that had none")
        return 0


async def cmd_embed(settings: Settings, org: str | None) -> int:
    from graph.embeddings import backfill, build_embedder
    from storage.keys import ORG_REGISTRY

    embedder = build_embedder(settings)
    if embedder is None:
        print("EMBEDDING_MODEL is not set: the knowledge search is lexical only", file=sys.stderr)
        return 1
    async with services(settings) as settings, open_deps(settings) as deps:
        orgs = [org] if org else sorted(await deps.redis.smembers(ORG_REGISTRY))
        for each in orgs:
            print(f"{each}: embedded {await backfill(deps.pool, embedder, each)} entries")
    return 0


async def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    from storage import webhooks
    from storage.chats import switch_bot

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


async def cmd_operator(settings: Settings, args: argparse.Namespace) -> int:
    """Credentials of the clinic's team for the operator API and the inbox page."""
    from storage import operators
    from storage.db import migrate

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
    from storage import webhooks
    from storage.db import migrate

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


async def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    from storage import dead_letters

    async with services(settings) as settings, open_deps(settings) as deps:
        if args.dlq_command == "show":
            letter = await dead_letters.get_letter(deps.redis, args.ref)
            if letter is None:
                print(
                    f"no dead letter {args.ref} (expected ORG/ENTRY_ID, see `skytide dlq list`)",
                    file=sys.stderr,
                )
                return 1
            print(json.dumps(asdict(letter), indent=2, ensure_ascii=False))
            return 0
        if args.dlq_command == "unknown":
            return await _print_unknown_outcomes(deps, args.org)
        letters = await dead_letters.list_letters(deps.redis, org=args.org, stage=args.stage)
        if args.dlq_command == "list":
            for letter in letters:
                print(
                    f"{letter.ref}  stage={letter.stage}  deliveries={letter.deliveries}  "
                    f"error={letter.error[:120]}"
                )
            print(f"{len(letters)} dead letter(s)")
            return 0
        replayed = 0
        for letter in letters:
            result = await dead_letters.replay_letter(deps.redis, letter)
            replayed += result.outcome == "put back"
            print(result.line())
        print(f"replayed {replayed} of {len(letters)} dead letter(s)")
        return 0


async def _print_unknown_outcomes(deps: Deps, org: str | None) -> int:
    """Replies still in doubt after SEND_DOUBT_MAX_S (no status event named them and resending
    did not settle it): given up on by the sender, so a person decides."""
    from ops.logs import mask
    from storage.outbound import unknown_outcomes

    found = await unknown_outcomes(deps.pool, org=org)
    for each in found:
        print(
            f"{each.org}  {mask(each.phone)}  key={each.idempotency_key}  "
            f"started={each.send_started_at:%Y-%m-%d %H:%M:%S}  reason={each.reason[:120]}"
        )
    print(
        f"{len(found)} message(s) with an unknown outcome (not resent: check with the "
        "customer or Gupshup's delivery report before sending again)"
    )
    return 0


async def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    """The conversation scenarios against the configured model (LLM_MODEL, OPENAI_BASE_URL)."""
    from pathlib import Path

    from graph import scenarios
    from graph.checkpoints import open_checkpointer
    from graph.receptionist import Receptionist
    from storage.db import migrate

    folder = (
        Path(args.dir)
        if args.dir
        else Path(__file__).resolve().parents[1] / "tests" / "conversations"
    )
    chosen = [s for s in scenarios.load(folder) if not args.only or args.only in s.name]
    if not chosen:
        print(f"no scenario in {folder} matches {args.only!r}", file=sys.stderr)
        return 2
    async with (
        services(settings) as settings,
        open_deps(settings) as deps,
        open_checkpointer(settings.redis_url, settings.checkpoint_ttl_min) as saver,
    ):
        await migrate(deps.pool)
        deps.clock = (
            scenarios.NOW.timestamp
        )  # the scenarios' dates are relative to a fixed Wednesday
        receptionist = Receptionist(deps, saver)
        print(
            f"{len(chosen)} scenarios x {args.k} runs against {settings.llm_model or 'offline'}",
            file=sys.stderr,
        )
        try:
            results = await scenarios.evaluate(
                deps,
                receptionist,
                chosen,
                args.k,
                args.concurrency,
                progress=lambda o: print(
                    "." if o.passed else "F", end="", file=sys.stderr, flush=True
                ),
            )
        finally:
            await receptionist.aclose()
        print(file=sys.stderr)
        print(scenarios.table(results, args.k))
        return 0 if all(o.passed for outs in results.values() for o in outs) else 1


def org_id(text: str) -> str:
    """An organization id as `org add` printed it (a UUID)."""
    import uuid

    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an organization id (a UUID, as `org add` and `seed-demo` print it)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skytide", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the given roles (all by default)")
    run.add_argument(
        "--roles",
        default=",".join(ALL_ROLES),
        help=f"comma-separated subset of {','.join(ALL_ROLES)}",
    )
    run.add_argument("--seed-demo", action="store_true", help="seed the demo clinic first")
    sub.add_parser("migrate", help="apply pending migrations (safe to run twice)")
    sub.add_parser("seed-demo", help="seed the demo clinic (app DemoClinic)")
    org = sub.add_parser("org", help="manage organizations").add_subparsers(
        dest="org_command", required=True
    )
    add = org.add_parser("add", help="provision an organization and its Gupshup connection")
    add.add_argument("--name", required=True)
    add.add_argument("--gupshup-app", required=True)
    add.add_argument("--gupshup-api-key", required=True)
    add.add_argument("--source-phone", required=True)
    add.add_argument(
        "--webhook-token",
        default=None,
        help="at least 12 characters; a random one is generated and printed if absent",
    )
    add.add_argument("--gupshup-app-id", default=None, help="needed for v3 (Meta format) callbacks")
    add.add_argument("--timezone", default="America/Bogota")
    oset = org.add_parser(
        "set", help="change settings: KEY=VALUE ... (see storage/org_settings.py)"
    )
    oset.add_argument("--org", required=True, type=org_id)
    oset.add_argument("--name", default=None)
    oset.add_argument("--timezone", default=None)
    oset.add_argument("values", nargs="*", metavar="KEY=VALUE")
    cat = sub.add_parser("catalog", help="the catalogue as a YAML file").add_subparsers(
        dest="catalog_command", required=True
    )
    cat_import = cat.add_parser(
        "import", help="create or update services, staff, hours, FAQ (idempotent)"
    )
    cat_import.add_argument("file")
    cat_import.add_argument("--org", required=True, type=org_id)
    cat.add_parser("export", help="print the catalogue as YAML").add_argument(
        "--org", required=True, type=org_id
    )
    org.add_parser(
        "token", help="print an app's webhook token (the callback URL's ?token=)"
    ).add_argument("--gupshup-app", required=True)
    bot = sub.add_parser("bot", help="turn the bot on or off for one chat")
    bot.add_argument("action", choices=["pause", "resume"])
    bot.add_argument("--org", required=True)
    bot.add_argument("--phone", required=True)
    operator = sub.add_parser(
        "operator", help="the clinic's team: tokens for the operator API and /inbox"
    ).add_subparsers(dest="operator_command", required=True)
    op_add = operator.add_parser("add", help="create an operator and print their token (once)")
    op_add.add_argument("--org", required=True, type=org_id)
    op_add.add_argument("--name", required=True, help="shown with their messages: staff:<name>")
    op_revoke = operator.add_parser("revoke", help="revoke an operator's token at once")
    op_revoke.add_argument("--org", required=True, type=org_id)
    op_revoke.add_argument("--id", required=True, help="as `operator list` prints it")
    operator.add_parser("list", help="the organization's operators").add_argument(
        "--org", required=True, type=org_id
    )
    hook = sub.add_parser(
        "webhook", help="the CRM's webhook endpoints (signed events)"
    ).add_subparsers(dest="webhook_command", required=True)
    hook_add = hook.add_parser("add", help="add an endpoint and print its secret (once)")
    hook_add.add_argument("--org", required=True, type=org_id)
    hook_add.add_argument("--url", required=True)
    hook_remove = hook.add_parser("remove", help="stop delivering to an endpoint")
    hook_remove.add_argument("--org", required=True, type=org_id)
    hook_remove.add_argument("--url", default=None)
    hook_remove.add_argument("--id", default=None, help="as `webhook list` prints it")
    hook.add_parser("list", help="the organization's endpoints").add_argument(
        "--org", required=True, type=org_id
    )
    dlq = sub.add_parser("dlq", help="dead letters: why entries failed, and replay").add_subparsers(
        dest="dlq_command", required=True
    )
    for name, help_text in (("list", "list dead letters"), ("replay", "put dead letters back")):
        command = dlq.add_parser(name, help=help_text)
        command.add_argument("--org", default=None)
        command.add_argument(
            "--stage", default=None, choices=["enrich", "agent", "sender", "webhooks"]
        )
    dlq.add_parser("show", help="show one dead letter").add_argument("ref", help="ORG/ENTRY_ID")
    dlq.add_parser(
        "unknown", help="replies given up on, still in doubt after SEND_DOUBT_MAX_S"
    ).add_argument("--org", default=None)
    rem = sub.add_parser("reminders", help="reminders for appointments not booked through the bot")
    rem.add_argument("action", choices=["plan"])
    rem.add_argument("--org", required=True, type=org_id)
    clock = sub.add_parser("clock", help="development: move the clock of DEV_CLOCK processes")
    clock.add_argument("action", choices=["show", "advance", "reset"])
    clock.add_argument("duration", nargs="?", help="for advance: 90m, 23h, 2d")
    embed = sub.add_parser("embed", help="embed catalogue entries for the hybrid search")
    embed.add_argument("--org", default=None, help="one organization (default: all)")
    sub.add_parser("bench", help="run the benchmarks (same as make bench)")
    evaluate = sub.add_parser(
        "eval",
        help="play the conversation scenarios k times against the configured "
        "model and print pass^k (creates throwaway organizations: "
        "use the embedded database or a test one)",
    )
    evaluate.add_argument("--k", type=int, default=5, help="runs per scenario (default 5)")
    evaluate.add_argument("--only", default=None, help="only scenarios whose name contains this")
    evaluate.add_argument(
        "--dir", default=None, help="scenario folder (default tests/conversations)"
    )
    evaluate.add_argument(
        "--concurrency", type=int, default=4, help="scenario runs at a time (default 4)"
    )
    add_contact_parser(sub, org_id)  # skytide contact export|erase
    return parser


def add_contact_parser(sub: argparse._SubParsersAction, org_id) -> None:
    """`skytide contact export|erase --org ORG --phone PHONE`: a patient's data (storage/privacy.py)."""
    contact = sub.add_parser(
        "contact", help="a patient's data: export it, or erase it"
    ).add_subparsers(dest="contact_command", required=True)
    export = contact.add_parser(
        "export", help="print every row and Redis value about one phone as JSON"
    )
    erase = contact.add_parser(
        "erase", help="delete (appointments: anonymise) everything about one phone"
    )
    for command in (export, erase):
        command.add_argument("--org", required=True, type=org_id)
        command.add_argument("--phone", required=True, help="international form, e.g. 573001234567")
    export.add_argument("--out", default=None, help="write the document to this file (mode 600)")
    erase.add_argument(
        "--yes", action="store_true", help="really erase (without it: only show what)"
    )


async def cmd_contact(settings: Settings, args: argparse.Namespace) -> int:
    from consumers.understanding import build_store
    from graph.checkpoints import checkpointer_on
    from ops.logs import mask
    from ops.system import services
    from storage import erasure, privacy, privacy_export
    from storage.db import migrate

    try:
        phone = privacy.normalize_phone(args.phone)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    async with services(settings) as settings, open_deps(settings) as deps:
        await migrate(deps.pool)
        now = datetime.fromtimestamp(deps.clock(), timezone.utc)
        person = await privacy.find(deps.pool, args.org, phone)
        if args.contact_command == "export":
            document = await privacy_export.export(deps.pool, deps.redis, person, now=now)
            text = json.dumps(document, indent=2, ensure_ascii=False)
            if args.out:
                # Health data: readable by its owner only, from the moment it exists.
                fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    out.write(text + "\n")
                print(f"wrote {args.out}", file=sys.stderr)
            else:
                print(text)
            return 0
        if not args.yes:
            state = await privacy.redis_state(deps.redis, person)
            print(
                json.dumps(
                    {
                        "phone": phone,
                        "found": person.found,
                        "would_erase": {
                            "contacts": len(person.contact_ids),
                            "chats": len(person.identity_ids),
                            "messages": len(person.message_ids),
                            "appointments_anonymised": len(person.appointment_ids),
                            "media_files": len(person.media_paths),
                            "redis": state.counts(),
                        },
                    },
                    indent=2,
                )
            )
            print("nothing erased: add --yes to erase", file=sys.stderr)
            return 2
        saver = await checkpointer_on(deps.redis, settings.checkpoint_ttl_min)
        result = await erasure.erase(
            deps.pool,
            deps.redis,
            build_store(deps),
            person,
            now=now,
            forget_thread=saver.adelete_thread,
        )
        # The record that the request was carried out (Ley 1581 asks the clinic to show it),
        # without the phone it was about.
        logging.getLogger("skytide.privacy").info(
            "erased contact %s of organization %s: %s",
            mask(phone),
            args.org,
            json.dumps({**result.as_dict(), "phone": mask(phone)}),
        )
        print(json.dumps(result.as_dict(), indent=2))
        return 0


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    from ops.embedded import ServiceError

    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        return refuse(invalid_lines(exc))
    # A configuration that cannot work stops here, one line per variable and no traceback:
    # the operator reads the fix, not our call stack.
    if args.command != "bench" and (
        problems := startup_problems(settings, roles_of(args))
        + exposure_problems(settings, roles_of(args))
        + pool_problems(settings)
    ):
        return refuse(problems)
    setup_logging(settings.log_level, settings.log_format)
    tracing.setup(settings)
    try:
        return _command(args, settings)
    except (ConfigError, ServiceError) as exc:
        return refuse([str(exc)])
    finally:
        tracing.shutdown()  # the spans still buffered go out


def exposure_problems(settings: Settings, roles: tuple[str, ...]) -> list[str]:
    """Production never serves /metrics and /readyz on the public webhook port: they say which
    dependency is down and how much traffic each tenant has. The ingress serves them on
    METRICS_PORT, which compose.yaml does not publish."""
    if "ingress" not in roles:
        return []
    if settings.metrics_port and settings.metrics_port == settings.http_port:
        return [
            f"METRICS_PORT={settings.metrics_port} is HTTP_PORT: /metrics and /readyz need "
            "a port of their own, not the public webhook port"
        ]
    if not settings.metrics_port and not settings.development:
        return [
            "METRICS_PORT is not set: production serves the ingress's /metrics and /readyz "
            "there (unpublished), never on the public HTTP_PORT"
        ]
    return []


def pool_problems(settings: Settings) -> list[str]:
    if settings.database_pool_min > settings.database_pool_max:
        return [
            f"DATABASE_POOL_MIN={settings.database_pool_min} is more than "
            f"DATABASE_POOL_MAX={settings.database_pool_max}"
        ]
    return []


def refuse(lines: list[str]) -> int:
    for line in lines:
        print(f"skytide: {line}", file=sys.stderr)
    return 2


def roles_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The roles a command runs (what it needs configured); none but `run` runs any."""
    if args.command != "run":
        return ()
    return tuple(r.strip() for r in args.roles.split(",") if r.strip())


def _command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "run":
        roles = roles_of(args)
        unknown = set(roles) - set(ALL_ROLES)
        if unknown:
            print(f"unknown role(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        if args.seed_demo and (why := demo_refused(settings)):
            print(why, file=sys.stderr)
            return 2
        run_async(cmd_run(settings, roles, args.seed_demo))
    elif args.command == "migrate":
        run_async(cmd_migrate(settings))
    elif args.command == "seed-demo":
        if why := demo_refused(settings):
            print(why, file=sys.stderr)
            return 2
        run_async(cmd_seed_demo(settings))
    elif args.command == "org" and args.org_command == "set":
        return run_async(cmd_org_set(settings, args))
    elif args.command == "org" and args.org_command == "token":
        return run_async(cmd_org_token(settings, args.gupshup_app))
    elif args.command == "org":
        from storage.orgs import MIN_TOKEN_CHARS

        if args.webhook_token is not None and len(args.webhook_token.strip()) < MIN_TOKEN_CHARS:
            print(
                f"--webhook-token must have at least {MIN_TOKEN_CHARS} characters "
                "(leave it out to get a random one)",
                file=sys.stderr,
            )
            return 2
        run_async(cmd_org_add(settings, args))
    elif args.command == "catalog":
        return run_async(cmd_catalog(settings, args))
    elif args.command == "bot":
        return run_async(cmd_bot(settings, args))
    elif args.command == "reminders":
        return run_async(cmd_reminders(settings, args))
    elif args.command == "clock":
        return run_async(cmd_clock(settings, args))
    elif args.command == "embed":
        return run_async(cmd_embed(settings, args.org))
    elif args.command == "operator":
        return run_async(cmd_operator(settings, args))
    elif args.command == "webhook":
        return run_async(cmd_webhook(settings, args))
    elif args.command == "dlq":
        return run_async(cmd_dlq(settings, args))
    elif args.command == "eval":
        return run_async(cmd_eval(settings, args))
    elif args.command == "contact":
        return run_async(cmd_contact(settings, args))
    elif args.command == "bench":
        from ops.bench.__main__ import main as bench_main

        return bench_main([])
    return 0
