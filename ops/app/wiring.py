"""What every command and role stands on: the dependencies opened once per process, and the
roles (ingress, stages, batcher, scheduler) started in this process and drained on the way out."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, TypeVar

import aiohttp
from aiohttp import web

from consumers.batcher import Batcher
from consumers.registry import keep_registry
from consumers.runtime import StageConfig, StageWorker
from consumers.scheduler import AttendanceStats, Scheduler
from consumers.team_stats import WaitingForPerson
from consumers.send_doubts import DoubtChecker
from consumers.sender import SenderStage
from consumers.stream_stats import StreamStats
from consumers.webhooks import WebhookStage, stage_config as webhook_config
from ingress.app import create_app, runner_options
from ops import health, http_phases, metrics, metrics_server
from ops.deps import Deps
from ops.settings import ALL_ROLES, ConfigError, Settings
from storage import chats
from storage.db import create_pool
from storage.keys import Stage
from storage.redis_client import create_redis


log = logging.getLogger("skytide")

T = TypeVar("T")


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


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop (a faster event loop) where it is installed, else on asyncio's own."""
    try:
        import uvloop  # optional: absent, asyncio's own loop runs everything the same
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


@asynccontextmanager
async def open_deps(settings: Settings) -> AsyncIterator[Deps]:
    """Redis, the PostgreSQL pool and the HTTP client, closed on the way out."""
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


def stage_config(settings: Settings, stage: Stage) -> StageConfig:
    s = settings
    return StageConfig(
        stage=stage,
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


def redis_url(settings: Settings) -> str:
    """REDIS_URL, which ops.system.services() has set by now (to an embedded server in
    development) or refused to start without."""
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is not set")
    return settings.redis_url


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
            # /readyz and /metrics are on METRICS_PORT; on the public port only in development
            # with METRICS_PORT unset (production refuses that: ops/app/cli.py).
            here = metrics_server.ready_needs(roles) if not settings.metrics_port else None
            runner = web.AppRunner(create_app(deps, here), **runner_options(deps))
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        workers = []
        if {"enrich", "agent"} & set(roles):
            # The modules of these two roles (LangGraph, Pydantic AI, google-genai) are imported
            # only by a process that runs them: they take most of the start-up time (about 5 s
            # of 7 here), and an ingress restarted mid-outage should be back before the
            # provider's retries run out.
            from ops.app import model_roles

            workers += await model_roles.workers(stack, deps, roles, consumer, receptionist_builder)
        if "sender" in roles:
            sender = SenderStage(deps, gupshup_api_url(settings))
            workers.append(
                StageWorker(
                    deps.redis,
                    stage_config(settings, Stage.SENDER),
                    sender.handle,
                    consumer,
                    on_dead_letter=sender.dead_lettered,
                    outages=deps.outages,
                )
            )
        if "scheduler" in roles:
            # The CRM's webhooks are delivered by the scheduler role (no role of their own).
            hooks = WebhookStage(deps)
            workers.append(
                StageWorker(
                    deps.redis,
                    webhook_config(stage_config(settings, Stage.WEBHOOKS), deps),
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
        if {"enrich", "agent"} & set(roles):
            # The chats these stages keep in memory are dropped when the change log says so.
            system.tasks.append(
                asyncio.create_task(chats.CACHE.run(deps.pool, stop), name="identity-cache")
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
    for role in roles:
        metrics.roles.labels(role).set(1)

    async def sample_health() -> None:
        await health.check(deps)  # sets skytide_dependency_up

    removers = [
        metrics.add_sampler(sample_health),
        metrics.add_sampler(StreamStats(deps.redis, list(roles))),
    ]
    if "scheduler" in roles:
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
