"""`make test-deploy`'s checks, against compose.yaml running in podman (deploy/test-deploy/run.sh
installs podman and builds the images first, and tears the stack down after).

    python -m tests.stack

1. The stack starts from compose.yaml as it is (deploy/test-deploy/stack-up.sh, in stages),
   with a generated .env whose Gupshup and OpenAI URLs point at the fakes of tests/fakes,
   served by this process on the host.
2. An organization is added with `skytide org add` inside the ingress container.
3. A webhook through the published port is answered at the Gupshup stand-in.
4. The agent role is scaled to 2 replicas; Prometheus finds every replica by DNS.
5. Eight customers write at once while the model answers slowly; one agent replica is stopped
   (SIGTERM) with turns in flight: it drains and exits 0 before its grace period, and every
   customer gets exactly one reply, nothing left pending in any stream.
6. The backup of docs/operations.md: `pg_dump` in the postgres container, restored with
   `pg_restore` into a fresh database, holds the same organizations and messages.
7. `skytide eval` runs in the image, on its default scenario folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp

from ops.embedded import free_port
from tests.fakes.gupshup import FakeGupshup
from tests.fakes.openai import FakeOpenAI, text, tool_call
from tests.helpers import post_webhook, text_webhook

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / os.environ.get("TEST_DEPLOY_WORK", ".data/test-deploy")
STACK = WORK / "stack"
PROJECT = os.environ.get("TEST_DEPLOY_PROJECT", "skytide-deploy-test")
COMPOSE = [str(WORK / "tools" / "bin" / "podman-compose"), "-p", PROJECT]
APP = "DeployTest"
TOKEN = secrets.token_hex(16)
# How the containers reach this host: podman puts the name in every container's /etc/hosts.
HOST = "host.containers.internal"
CUSTOMERS = 8  # writing at once in the drain check
REPLY = "¡Hola! Con gusto te ayudo."
MODEL_DELAY_S = 4.0  # each model call, while a replica is stopped: turns are in flight

started = time.monotonic()


def step(what: str) -> None:
    print(f"==> [{time.monotonic() - started:5.0f} s] {what}", flush=True)


async def run(*args: str, timeout: float = 300, stderr: bool = False) -> str:
    """A command's stdout (and stderr, if asked); on failure, its output and exit code end the
    run. In a thread: the fakes serving the containers run in this process's event loop."""
    done = await asyncio.to_thread(
        subprocess.run,
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if stderr else subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr or ''}"
        )
    return done.stdout


async def containers(service: str) -> list[str]:
    """The names of a service's containers, replicas in order."""
    out = await run(
        "podman",
        "ps",
        "--filter",
        f"label=io.podman.compose.project={PROJECT}",
        "--filter",
        f"label=com.docker.compose.service={service}",
        "--format",
        "{{.Names}}",
    )
    return sorted(out.split())


def write_stack(http_port: int, prometheus_port: int, gupshup_port: int, openai_port: int) -> None:
    """compose.yaml as it is, the Prometheus configuration it mounts, and a fresh .env (the
    repository's own .env, if any, is never touched)."""
    shutil.rmtree(STACK, ignore_errors=True)
    (STACK / "deploy").mkdir(parents=True)
    shutil.copy(ROOT / "compose.yaml", STACK / "compose.yaml")
    shutil.copytree(ROOT / "deploy" / "prometheus", STACK / "deploy" / "prometheus")
    env = {
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "REDIS_PASSWORD": secrets.token_hex(16),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),  # compose requires it; not started
        "HTTP_PUBLISH": f"127.0.0.1:{http_port}",
        "PROMETHEUS_PUBLISH": str(prometheus_port),
        "GUPSHUP_API_URL": f"http://{HOST}:{gupshup_port}",
        "LLM_MODEL": "openai:gpt-4o-mini",
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": f"http://{HOST}:{openai_port}/v1",
        "DEBOUNCE_SECONDS": "1",  # 10 s by default: a check waits for every burst
        "DRAIN_TIMEOUT_S": "20",
    }
    (STACK / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))


async def add_org(ingress: str) -> str:
    command = (
        "podman",
        "exec",
        ingress,
        "skytide",
        "org",
        "add",
        "--name",
        "Clínica Deploy",
        "--gupshup-app",
        APP,
        "--gupshup-api-key",
        "deploy-key",
        "--source-phone",
        "573001110000",
        "--webhook-token",
        TOKEN,
    )
    # Once in a few runs on these machines, aardvark-dns did not answer the first `podman exec`
    # right after start ("redis: Temporary failure in name resolution") while every role, already
    # healthy, resolved the same names: that one failure, and only it, is tried again.
    for attempt in range(3):
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=120
        )
        if done.returncode == 0:
            return done.stdout.split()[0]
        if "name resolution" not in done.stderr or attempt == 2:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
        print("    DNS not answering yet inside the container: once more in 2 s", flush=True)
        await asyncio.sleep(2)
    raise AssertionError("unreachable")


async def pipeline_left(ingress: str, org: str) -> dict[str, int]:
    """Entries not yet handled, per stream, read inside the ingress container (Redis is not
    published): pending in a group or not yet read by it."""
    script = (
        "import json, os, redis\n"
        "from storage import keys\n"
        "r = redis.Redis.from_url(os.environ['REDIS_URL'])\n"
        "left = {}\n"
        f"for stage in (*keys.PIPELINE_STREAMS, keys.Stream.WEBHOOKS):\n"
        f"    stream = keys.stream({org!r}, stage)\n"
        "    if r.exists(stream):\n"
        "        left[stage] = sum(g['pending'] + (g.get('lag') or 0) for g in r.xinfo_groups(stream))\n"
        f"left['due'] = r.zcard(keys.due({org!r}))\n"
        "print(json.dumps(left))\n"
    )
    left: dict[str, int] = json.loads(await run("podman", "exec", ingress, "python", "-c", script))
    return left


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise SystemExit(f"{what}: not within {timeout_s:.0f} s (last: {value!r})")


def model_answer(body: dict[str, Any]) -> dict[str, Any]:
    """The stand-in model: the router sends every message to the knowledge expert, which
    answers with a greeting (the fake's default would fill only required fields: no reply)."""
    for tool in body.get("tools") or []:
        function = tool.get("function") or {}
        if function.get("name") == "final_result":
            fields = (function.get("parameters") or {}).get("properties") or {}
            if "reply" in fields:
                return tool_call("final_result", reply=REPLY, done=True)
            return tool_call("final_result", flow="knowledge")
    return text(REPLY)


def replies_to(gupshup: FakeGupshup, phone: str) -> list[str]:
    return [str((m.message or {}).get("text")) for m in gupshup.sent if m.destination == phone]


async def prometheus_targets(port: int) -> dict[str, int]:
    """Healthy scrape targets per job, as Prometheus found them by DNS."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/api/v1/targets") as response:
            body = await response.json()
    up: dict[str, int] = {}
    for target in body["data"]["activeTargets"]:
        if target["health"] == "up":
            up[target["labels"]["job"]] = up.get(target["labels"]["job"], 0) + 1
    return up


async def main() -> None:
    http_port, prometheus_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    gupshup = FakeGupshup(
        app_name=APP, callback_url=f"{url}/webhooks/gupshup", callback_token=TOKEN
    )
    openai = FakeOpenAI()
    openai.responder = model_answer
    for fake in (gupshup, openai):
        fake.bind_host = "0.0.0.0"  # the containers call this host
    async with gupshup, openai:
        write_stack(http_port, prometheus_port, gupshup.port, openai.port)
        step("start compose.yaml in stages (Grafana left out: no image here)")
        up = await asyncio.create_subprocess_exec(
            str(ROOT / "deploy" / "test-deploy" / "stack-up.sh"),
            str(STACK),
            env={**os.environ, "PODMAN_COMPOSE": COMPOSE[0]},
        )
        if await up.wait() != 0:
            raise SystemExit("the stack did not start")
        [ingress] = await containers("ingress")

        step("skytide org add, inside the ingress container")
        org = await add_org(ingress)

        step("a webhook through the published port; the reply at the Gupshup stand-in")
        phone = "573009990000"
        status, _ = await post_webhook(
            url,
            text_webhook(APP, phone, "hola, buenas", "deploy-1", int(time.time() * 1000)),
            token=TOKEN,
        )
        assert status == 200, status
        await eventually(
            lambda: _true(bool(replies_to(gupshup, phone))),
            timeout_s=60,
            what="the reply at Gupshup",
        )
        assert replies_to(gupshup, phone) == [REPLY], replies_to(gupshup, phone)
        print(f"    reply to {phone}: {replies_to(gupshup, phone)}", flush=True)

        step("scale the agent role to 2 replicas; Prometheus finds every replica by DNS")
        await run(*COMPOSE, "-f", str(STACK / "compose.yaml"), "up", "-d", "--no-deps", "--scale",
            "agent=2", "agent")  # fmt: skip
        agents = await containers("agent")
        assert len(agents) == 2, agents
        expected = {
            "ingress": 1,
            "enrich": 1,
            "batcher": 1,
            "agent": 2,
            "sender": 1,
            "scheduler": 1,
        }
        found = await eventually(
            lambda: _equal(prometheus_targets(prometheus_port), expected),
            timeout_s=90,
            what=f"Prometheus scraping {expected}",
        )
        print(f"    targets up: {found}", flush=True)

        step(f"{CUSTOMERS} customers at once; one agent replica stopped with turns in flight")
        openai.delay_s = MODEL_DELAY_S
        asked_before = len(openai.requests_to("/v1/chat/completions"))
        phones = [f"57300888{i:04d}" for i in range(CUSTOMERS)]
        now_ms = int(time.time() * 1000)
        for i, customer in enumerate(phones):
            body = text_webhook(APP, customer, "hola, qué servicios tienen?", f"drain-{i}", now_ms)
            status, _ = await post_webhook(url, body, token=TOKEN)
            assert status == 200, status
        # Every turn is waiting on the model (a request is recorded when it arrives), so both
        # replicas hold some.
        await eventually(
            lambda: _true(
                len(openai.requests_to("/v1/chat/completions")) - asked_before >= CUSTOMERS
            ),
            timeout_s=60,
            what="every turn waiting on the model",
        )
        stopped = agents[1]
        began = time.monotonic()
        await run("podman", "stop", "-t", "30", stopped, timeout=60)  # SIGTERM, then 30 s grace
        took = time.monotonic() - began
        exit_code = (await run("podman", "inspect", "-f", "{{.State.ExitCode}}", stopped)).strip()
        drained = [
            line
            for line in (await run("podman", "logs", stopped, stderr=True)).splitlines()
            if "draining" in line
        ]
        print(f"    {stopped} stopped in {took:.1f} s, exit {exit_code}", flush=True)
        for line in drained:
            print(f"      {_message(line)}", flush=True)
        assert exit_code == "0", f"{stopped} exited {exit_code} (137: killed, not drained)"
        assert any(re.search(r"agent: draining [1-9]", _message(x)) for x in drained), (
            f"{stopped} had no turn in flight to drain: {drained}"
        )
        await eventually(
            lambda: _true(all(replies_to(gupshup, p) for p in phones)),
            timeout_s=90,
            what="a reply to every customer",
        )
        await eventually(
            lambda: _nothing_left(ingress, org),
            timeout_s=60,
            what="every stream handled",
        )
        counts = {p: len(replies_to(gupshup, p)) for p in phones}
        assert set(counts.values()) == {1}, f"replies per customer: {counts}"
        print(
            f"    every customer answered once; nothing pending: {await pipeline_left(ingress, org)}"
        )
        openai.delay_s = 0

        step("the backup of docs/operations.md: pg_dump, then pg_restore into a fresh database")
        [postgres] = await containers("postgres")
        dump = WORK / "skytide.dump"
        with dump.open("wb") as out:  # the dump is binary: straight to the file
            dumped = await asyncio.to_thread(
                subprocess.run,
                ["podman", "exec", postgres, "pg_dump", "-U", "skytide", "-d", "skytide",
                 "--format=custom"],
                stdout=out,
            )  # fmt: skip
        assert dumped.returncode == 0, "pg_dump failed"
        await run("podman", "exec", postgres, "createdb", "-U", "skytide", "skytide_restored")
        restore = ["podman", "exec", "-i", postgres, "pg_restore", "-U", "skytide", "--no-owner",
                   "--exit-on-error", "-d", "skytide_restored"]  # fmt: skip
        with dump.open("rb") as dump_in:
            restored = await asyncio.to_thread(
                subprocess.run, restore, stdin=dump_in, capture_output=True, text=True
            )
        assert restored.returncode == 0, restored.stderr
        rows: dict[str, str] = {}  # organizations|messages, per database
        for database in ("skytide", "skytide_restored"):
            rows[database] = (
                await run(
                    "podman",
                    "exec",
                    postgres,
                    "psql",
                    "-U",
                    "skytide",
                    "-d",
                    database,
                    "-Atc",
                    "select (select count(*) from organizations),"
                    " (select count(*) from chat_messages)",
                )  # fmt: skip
            ).strip()
        assert rows["skytide"] == rows["skytide_restored"], rows
        print(f"    {dump.stat().st_size} bytes; organizations|messages: {rows}", flush=True)

        step("skytide eval in the image, on its default scenario folder (offline model)")
        began = time.monotonic()
        table = await run(
            "podman",
            "exec",
            "-e",
            "SKYTIDE_ENV=development",
            "-e",
            "LLM_MODEL=offline",
            ingress,
            "skytide",
            "eval",
            "--k",
            "1",
            timeout=600,
        )
        print(f"    {table.strip().splitlines()[-1]} ({time.monotonic() - began:.0f} s)")
    step("all checks passed")


async def _equal(
    found: Awaitable[dict[str, int]], expected: dict[str, int]
) -> dict[str, int] | None:
    value = await found
    return value if value == expected else None


async def _nothing_left(ingress: str, org: str) -> bool:
    return not any((await pipeline_left(ingress, org)).values())


async def _true(value: bool) -> bool:
    return value


def _message(line: str) -> str:
    """The message of a JSON log line (LOG_FORMAT=json), or the line itself."""
    try:
        return str(json.loads(line).get("msg", line))
    except ValueError:
        return line


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except AssertionError as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
