"""Test fixtures: a real Redis 8 (JSON + Search) and a real PostgreSQL 18, started once per
session from the project's own embedded builds, wiped between tests; fake SaaS servers only."""

from __future__ import annotations

import os

import asyncio
import shutil
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Awaitable, Callable

import pydantic_ai.models
import pytest

from ops.app.wiring import open_deps, running_system
from ops.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from ops.embedded_cluster import EmbeddedRedisCluster
from ops.deps import Deps
from ops.settings import ALL_ROLES, Settings
from storage.db import create_pool, migrate
from storage.keys import ORG_REGISTRY
from storage.orgs import add_org
from storage.seed import seed_catalog
from tests import clock
from tests.fakes.gupshup import FakeGupshup

# Never a real LLM in tests: only the offline and scripted models, or the fake OpenAI server
# through the allow_model_requests fixture.
pydantic_ai.models.ALLOW_MODEL_REQUESTS = False

TABLES = (
    "staff_hours",
    "staff_time_off",
    "closures",
    "appointments",
    "contact_authorizations",
    "thread_summaries",
    "chat_messages",
    "chat_identities",
    "contacts",
    "knowledge_entries",
    "staff_services",
    "staff",
    "services",
    "business_hours",
    "platform_connections",
    "organizations",
)


@pytest.fixture
def allow_model_requests(monkeypatch):
    """For tests that talk to the fake OpenAI server (a real HTTP model client)."""
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)


@pytest.fixture(scope="session", autouse=True)
def development_mode():
    """The tests run in development (embedded servers, the offline model, the simulator), as
    `make test` says too; so do the `skytide` processes they start, which inherit the
    environment. Restored at the end: `skytide` itself defaults to production."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKYTIDE_ENV", "development")
        if REDIS_CLUSTER:  # and the processes they start find the cluster as a cluster
            patch.setenv("REDIS_CLUSTER", "true")
        yield


REDIS_CLUSTER = os.environ.get("TEST_REDIS_CLUSTER", "") not in ("", "0")


@pytest.fixture(scope="session")
def embedded() -> dict[str, Any]:
    """The session's servers themselves (the outage tests stop and start PostgreSQL).

    Their folder is not under pytest's own temporary root: another pytest session starting on
    the same machine resets that root's permissions, and PostgreSQL runs as another user.
    """
    root = Path(tempfile.mkdtemp(prefix="skytide-test-servers-"))
    # TEST_REDIS_CLUSTER=1 (make test-cluster): a three-primary, three-replica Redis Cluster.
    redis_server = (
        EmbeddedRedisCluster(root / "redis") if REDIS_CLUSTER else EmbeddedRedis(root / "redis")
    )
    postgres = EmbeddedPostgres(root / "pg")
    found = {
        "redis": redis_server,
        "postgres": postgres,
        "redis_url": redis_server.start(),
        "database_url": postgres.start(),
    }
    yield found
    redis_server.stop()
    postgres.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def servers(embedded) -> dict[str, str]:
    return {"redis_url": embedded["redis_url"], "database_url": embedded["database_url"]}


@pytest.fixture(scope="session")
async def migrated(servers) -> dict[str, str]:
    pool = await create_pool(servers["database_url"])
    await migrate(pool)
    await pool.close()
    return servers


@pytest.fixture
async def settings(migrated) -> Settings:
    """Settings for one test: fast debounce and retries, a fresh port."""
    return Settings(
        redis_url=migrated["redis_url"],
        database_url=migrated["database_url"],
        http_port=free_port(),
        debounce_seconds=0.3,
        debounce_max_wait_seconds=3,
        block_ms=100,
        claim_idle_ms=1500,
        claim_every_s=0.3,
        org_refresh_s=0.2,
        retry_base_s=0.05,
        retry_max_s=0.2,
        drain_timeout_s=5,
        dev_chat_enabled=True,
        gupshup_api_url="http://127.0.0.1:9/unset",
        chat_wait_s=10,
        media_allowed_hosts="127.0.0.1",  # the fake Gupshup's media host
        clock_offset_s=clock.OFFSET_S,
        redis_cluster=REDIS_CLUSTER,
    )  # every test runs on the session's fixed date and hour


@pytest.fixture
async def deps(settings):
    async with open_deps(settings) as deps:
        await deps.redis.flushdb()
        await deps.pool.execute(f"truncate {', '.join(TABLES)} cascade")
        yield deps


@pytest.fixture
async def gupshup():
    async with FakeGupshup() as fake:
        yield fake


@pytest.fixture
def make_org(deps) -> Callable[..., Awaitable[str]]:
    """Factory: an organization with a Gupshup connection; returns its id."""

    async def make(
        app: str | None = None,
        *,
        token: str = "secret-token",
        settings: dict[str, Any] | None = None,
        catalog: bool = False,
        **kwargs: Any,
    ) -> str:
        """catalog=True gives it the demo clinic's services, staff, hours and FAQ."""
        org = await add_org(
            deps.pool,
            name=f"Org {app}",
            app_name=app or f"app-{uuid.uuid4().hex[:8]}",
            api_key="test-api-key",
            source_phone="919999999999",
            webhook_token=token,
            settings=settings,
            **kwargs,
        )
        if catalog:
            await seed_catalog(deps.pool, org)
        await deps.redis.sadd(ORG_REGISTRY, org)
        return org

    return make


# The scheduler's confirmations would interleave with the replies most tests count; the tests
# of confirmations and reminders ask for it (roles=ALL_ROLES).
PIPELINE_ROLES = tuple(role for role in ALL_ROLES if role != "scheduler")


@pytest.fixture
def system(settings, deps, gupshup):
    """Factory: the whole pipeline in this process, sending to the fake Gupshup."""

    @asynccontextmanager
    async def start(receptionist_builder=None, roles=PIPELINE_ROLES, **overrides: Any):
        test_settings = settings.model_copy(update={"gupshup_api_url": gupshup.url, **overrides})
        test_deps = Deps(settings=test_settings, redis=deps.redis, pool=deps.pool, http=deps.http)
        async with running_system(
            test_settings, roles, deps=test_deps, receptionist_builder=receptionist_builder
        ) as s:
            yield s

    return start


def recording_receptionist(seen: list[list[str]]):
    """The real receptionist, noting the messages each turn sees (for tests of batching)."""
    from graph.receptionist import Receptionist

    class Recording(Receptionist):
        async def run_turn(self, turn):
            seen.append(list(turn.texts))
            return await super().run_turn(turn)

    return Recording


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout_s: float = 10.0, interval_s: float = 0.05
) -> Any:
    """Poll until `check` returns something truthy; fail with the last value after timeout_s."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s (last value: {value!r})")
