"""The deployment's processes, for real: every app service of compose.yaml runs its command as
written there, one process per role, against the suite's Redis and PostgreSQL, sending to the
fake Gupshup. One customer message goes through all of them; each process serves its metrics
on METRICS_PORT (the ingress's public port serves webhooks and /healthz, not metrics), a real
Prometheus scrapes them all, the logs are JSON lines with the turn's context, and the spans of
the message form one trace."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml

from ops.embedded import free_port
from ops.logs import mask
from storage.db import create_pool
from storage.keys import ORG_REGISTRY
from storage.orgs import add_org
from storage.redis_client import create_redis
from storage.seed import seed_catalog
from tests.conftest import eventually
from tests.fakes.gupshup import FakeGupshup
from tests.helpers import post_webhook, text_webhook
from tests.otlp_receiver import OtlpReceiver
from tests.test_deploy import APP, DEPLOY, SERVICES
from tests import clock
from tests.conftest import TABLES

PHONE = "573001234567"
APP_NAME = f"procs-{uuid.uuid4().hex[:6]}"


@dataclass
class Proc:
    service: str
    process: subprocess.Popen
    url: str  # where its /metrics is
    log: Path

    def lines(self) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass  # a library printing plain text
        return out


@dataclass
class Deployment:
    procs: dict[str, Proc]
    gupshup: FakeGupshup
    otlp: OtlpReceiver
    ingress_url: str
    org: str

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()


def command_of(service: str) -> list[str]:
    command = SERVICES[service]["command"]
    assert command[0] == "skytide"
    return [sys.executable, "-m", "ops", *command[1:]]  # the console script's own entry point


async def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if proc.poll() is not None:
                raise AssertionError(f"{url} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never became ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
async def deployment(migrated, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deployment")
    pool = await create_pool(migrated["database_url"])
    redis = create_redis(migrated["redis_url"])
    # What earlier tests left (their appointments, their queued work) would be picked up by
    # these processes' scheduler and stages: they start from an empty database and Redis.
    await redis.flushdb()
    await pool.execute(f"truncate {', '.join(TABLES)} cascade")
    org = await add_org(
        pool,
        name="Procesos",
        app_name=APP_NAME,
        api_key="k",
        source_phone="57300",
        webhook_token="secret-token",
    )
    await seed_catalog(pool, org)
    await redis.sadd(ORG_REGISTRY, org)
    async with FakeGupshup() as gupshup, OtlpReceiver() as otlp:
        env = {
            **os.environ,
            "CLOCK_OFFSET_S": str(clock.OFFSET_S),
            "REDIS_URL": migrated["redis_url"],
            "DATABASE_URL": migrated["database_url"],
            "GUPSHUP_API_URL": gupshup.url,
            "HTTP_HOST": "127.0.0.1",
            "LOG_FORMAT": "json",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
            "DEBOUNCE_SECONDS": "0.3",
            "BLOCK_MS": "100",
            "ORG_REFRESH_S": "0.2",
            "BATCHER_TICK_S": "0.02",
            "DRAIN_TIMEOUT_S": "5",
            "MEDIA_DIR": str(tmp / "media"),
        }
        migrate = subprocess.run(
            command_of("migrate"), env=env, capture_output=True, text=True, timeout=120
        )
        assert migrate.returncode == 0, migrate.stderr
        procs: dict[str, Proc] = {}
        public_port = free_port()  # the ingress's webhooks; every process's metrics apart
        for service in sorted(APP - {"migrate"}):  # every long-running app service of compose.yaml
            port = free_port()
            proc_env = {
                **env,
                "METRICS_PORT": str(port),
                "HTTP_PORT": str(public_port),
                "OTEL_SERVICE_NAME": f"skytide-{service}",
            }
            if service == "agent":
                proc_env["LOG_LEVEL"] = "DEBUG"  # the tool-call lines
            log = tmp / f"{service}.log"
            process = subprocess.Popen(
                command_of(service), env=proc_env, stdout=subprocess.DEVNULL, stderr=log.open("w")
            )
            procs[service] = Proc(service, process, f"http://127.0.0.1:{port}", log)
        deployment = Deployment(procs, gupshup, otlp, f"http://127.0.0.1:{public_port}", org)
        try:
            for proc in procs.values():
                await wait_ready(proc.url, proc.process, proc.log)
            yield deployment
        finally:
            deployment.stop()
            await redis.srem(ORG_REGISTRY, org)
            await redis.aclose()
            await pool.close()


async def test_a_booking_request_goes_through_every_process(deployment):
    body = text_webhook(
        APP_NAME,
        PHONE,
        "quiero una cita para limpieza facial mañana en la tarde",
        f"wamid.{uuid.uuid4().hex}",
        clock.now_ms(),
    )
    status, _ = await post_webhook(deployment.ingress_url, body)
    assert status == 200
    sent = await deployment.gupshup.wait_for_sent(1, timeout_s=30)
    assert sent[0].destination == PHONE and sent[0].message["text"]


async def test_the_public_port_serves_webhooks_and_liveness_not_metrics_or_readiness(deployment):
    async with aiohttp.ClientSession() as session:
        async with session.get(deployment.ingress_url + "/healthz") as response:
            assert response.status == 200  # for a load balancer
        for path in ("/metrics", "/readyz"):
            async with session.get(deployment.ingress_url + path) as response:
                assert response.status == 404, path
            async with session.get(deployment.procs["ingress"].url + path) as response:
                assert response.status == 200, path  # on METRICS_PORT, unpublished


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.get(url + "/metrics") as response:
            assert response.status == 200
            return await response.text()


async def test_every_process_serves_its_own_metrics(deployment):
    procs = deployment.procs
    texts = {name: await scrape(proc.url) for name, proc in procs.items()}
    for name, text in texts.items():
        role = "ingress" if name == "ingress" else name
        assert f'skytide_process_roles{{role="{role}"}} 1.0' in text, name
        assert 'skytide_dependency_up{dependency="redis"} 1.0' in text, name
    org = deployment.org
    assert (
        f'skytide_webhook_events_total{{kind="text",org="{org}",result="queued"}} 1.0'
        in texts["ingress"]
    )
    assert 'skytide_stage_entries_total{outcome="acked",stage="enrich"}' in texts["enrich"]
    assert "skytide_turn_messages_count 1.0" in texts["agent"]
    assert "skytide_end_to_end_seconds_count 1.0" in texts["sender"]
    assert f'skytide_messages_sent_total{{org="{org}",outcome="accepted"}} 1.0' in texts["sender"]
    for stage in ("enrich", "agent", "sender"):  # sampled at scrape: all read, none waiting
        assert f'skytide_stream_lag{{org="{org}",stage="{stage}"}} 0.0' in texts[stage], stage
    assert "skytide_redis_command_seconds_count" in texts["batcher"]


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not installed (Debian package prometheus; .ci/run installs it)",
)
async def test_prometheus_scrapes_every_process(deployment, tmp_path):
    # deploy/prometheus/prometheus.yml, with the processes' addresses in place of Docker's DNS.
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    for job in config["scrape_configs"]:
        job.pop("dns_sd_configs")
        job["static_configs"] = [
            {"targets": [deployment.procs[job["job_name"]].url.split("//")[1]]}
        ]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with aiohttp.ClientSession() as session:

            async def query(expr: str) -> dict[str, float]:
                try:
                    async with session.get(f"{api}/query", params={"query": expr}) as response:
                        data = await response.json()
                except aiohttp.ClientError:
                    return {}
                return {
                    r["metric"].get("job", ""): float(r["value"][1]) for r in data["data"]["result"]
                }

            jobs = set(deployment.procs)
            up = await eventually(lambda: _all(query("up"), jobs), timeout_s=30, interval_s=0.5)
            assert up == {job: 1.0 for job in jobs}
            roles = await eventually(
                lambda: _all(query("sum by (job) (skytide_process_roles)"), jobs),
                timeout_s=10,
                interval_s=0.5,
            )
            assert roles == {job: 1.0 for job in jobs}
            webhooks = await query('sum by (job) (skytide_webhook_events_total{result="queued"})')
            sent = await query('sum by (job) (skytide_messages_sent_total{outcome="accepted"})')
            assert webhooks["ingress"] >= 1 and sent["sender"] >= 1
            async with session.get(f"{api}/rules") as response:
                rules = await response.json()
            loaded = {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
            assert {"StageLagGrowing", "DeadLettersAppearing", "DependencyDown"} <= loaded
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)


async def _all(result, jobs: set[str]) -> dict[str, float] | None:
    found = await result
    return found if set(found) >= jobs else None


def test_logs_are_json_lines_with_the_turn_and_tool_call(deployment):
    lines = deployment.procs["agent"].lines()
    turn = [line for line in lines if line.get("turn_id") and line.get("thread_id")]
    assert turn, "no agent log line carried the turn's context"
    assert {line["org_id"] for line in turn} == {deployment.org}
    assert {line["chat_id"] for line in turn} == {mask(PHONE)} != {PHONE}  # tells chats apart
    assert PHONE not in deployment.procs["agent"].log.read_text()
    assert any(line.get("tool_call_id") for line in turn)
    assert all(line.get("trace_id") for line in turn)
    enrich = [line for line in deployment.procs["enrich"].lines() if line.get("org_id")]
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines + enrich)


async def test_the_spans_of_one_message_form_one_trace(deployment):
    # Each process sends its buffered spans as it exits, to the receiver on this loop: wait for
    # the processes from a thread so the loop keeps serving it.
    await asyncio.to_thread(deployment.stop)
    spans = deployment.otlp.spans
    webhook = [s for s in spans if s.name == "ingress.webhook"]
    assert len(webhook) == 1
    trace = [s for s in spans if s.trace_id == webhook[0].trace_id]
    services = {s.service for s in trace}
    assert services == {"skytide-ingress", "skytide-enrich", "skytide-agent", "skytide-sender"}
    names = {s.name for s in trace}
    assert {"ingress.webhook", "enrich", "agent.turn", "sender"} <= names
    assert {"node router", "node appointment"} <= names, names
    # Pydantic AI's own spans: the expert's run, its model requests and its tool calls.
    assert "invoke_agent appointment" in names
    assert any(n.startswith("chat ") for n in names) and any(
        n.startswith("execute_tool ") for n in names
    )
    by_id = {s.span_id: s for s in trace}
    roots = [s for s in trace if not s.parent_id]
    assert roots == webhook  # every other span hangs from the webhook's
    assert all(s.parent_id in by_id for s in trace if s.parent_id)
    assert not any(
        PHONE in value for s in trace for value in s.attributes.values()
    )  # personal data
