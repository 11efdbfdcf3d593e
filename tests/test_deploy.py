"""The deployment files: compose.yaml, .env.example, Prometheus' config and alert rules, and the
Grafana dashboard. No Docker engine runs here, so they are checked by parsing them; the
commands of compose.yaml's services are run for real by tests/test_processes.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops import metrics
from ops.app.parser import build_parser
from ops.settings import ALL_ROLES, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
APP = {"migrate", "ingress", "enrich", "batcher", "agent", "sender", "scheduler"}
WORKERS = APP - {"migrate", "ingress"}
# Variables compose.yaml itself reads (${...}); every other one is an app setting.
COMPOSE_ONLY = {
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "HTTP_PUBLISH",
    "PROMETHEUS_PUBLISH",
    "GRAFANA_PUBLISH",
    "PGBOUNCER_MAX_CLIENT_CONN",
    "PGBOUNCER_POOL_SIZE",
    "POSTGRES_MAX_CONNECTIONS",
}
PASSWORDS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD")


def setting_names() -> set[str]:
    return {(field.alias or name).upper() for name, field in Settings.model_fields.items()}


def env_example() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {key: value for key, value in pairs}


def metric_names() -> set[str]:
    """Every series name the app can export, histogram and counter suffixes included."""
    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(skytide_[a-z_]+)", expr))


def test_the_metrics_catalogue_names_every_metric():
    catalogue = (ROOT / "docs" / "metrics.md").read_text()
    missing = [
        family.name + ("_total" if family.type == "counter" else "")
        for family in metrics.REGISTRY.collect()
        if family.name.startswith("skytide_")
    ]
    missing = [name for name in missing if f"`{name}`" not in catalogue]
    assert not missing, f"add to docs/metrics.md: {missing}"


def test_compose_names_every_service_and_runs_every_role():
    assert set(SERVICES) == APP | {"redis", "postgres", "pgbouncer", "prometheus", "grafana"}
    roles: set[str] = set()
    for name in APP:
        command = SERVICES[name]["command"]
        assert command[0] == "skytide", name
        args = build_parser().parse_args(command[1:])  # the CLI accepts it as written
        if name == "migrate":
            assert args.command == "migrate"
        else:
            assert args.command == "run"
            service_roles = set(args.roles.split(","))
            assert service_roles <= set(ALL_ROLES), name
            roles |= service_roles
    assert roles == set(ALL_ROLES)  # each role has a service, so each scales on its own


def test_compose_services_are_durable_healthy_and_scalable():
    redis = SERVICES["redis"]
    assert redis["image"].startswith("redis:8")
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "pgvector" in SERVICES["postgres"]["image"]
    for name, service in SERVICES.items():
        if name == "migrate":  # one-shot: never restarted, and the app waits for it to finish
            assert service["restart"] == "no"
            continue
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"][0] == "CMD", name
    for name in APP - {"migrate"}:
        depends = SERVICES[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert (
            depends["redis"]["condition"] == depends["postgres"]["condition"] == "service_healthy"
        )
        assert depends["pgbouncer"]["condition"] == "service_healthy"
        assert SERVICES[name]["env_file"] == ".env"
    for name in WORKERS:
        # --scale needs services without a fixed host port or container name
        service = SERVICES[name]
        assert "ports" not in service and "container_name" not in service, name
    for name in WORKERS | {"ingress"}:
        # each replica, the ingress too, answers its health check and Prometheus on METRICS_PORT
        service = SERVICES[name]
        port = service["environment"]["METRICS_PORT"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    for name in APP:
        assert set(SERVICES[name]["environment"]) <= setting_names(), name


def test_env_example_documents_every_variable_compose_reads(monkeypatch):
    example = env_example()
    assert set(example) <= setting_names() | COMPOSE_ONLY, (
        set(example) - setting_names() - COMPOSE_ONLY
    )
    compose_vars = set(re.findall(r"\$\{([A-Z_]+)", (ROOT / "compose.yaml").read_text()))
    assert compose_vars <= set(example), compose_vars - set(example)
    assert COMPOSE_ONLY <= set(example)
    for key, value in example.items():  # the values as written are valid settings
        monkeypatch.setenv(key, value)
    assert Settings().llm_model == example["LLM_MODEL"]
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_prometheus_scrapes_every_role_on_its_port():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    assert set(jobs) == APP - {"migrate"}
    for name, sd in jobs.items():
        assert sd["names"] == [name]
        # the ingress too: its public port serves no /metrics in production
        assert sd["port"] == int(SERVICES[name]["environment"]["METRICS_PORT"])


def published(service: dict) -> list[str]:
    return [str(port) for port in service.get("ports", [])]


def test_nothing_is_exposed_by_default():
    """Only the webhook port is published on every interface; Prometheus and Grafana on the
    host's loopback; metrics and readiness on METRICS_PORT, published nowhere."""
    open_ports = {
        name: published(s)
        for name, s in SERVICES.items()
        if any(not p.startswith("127.0.0.1:") for p in published(s))
    }
    assert open_ports == {"ingress": ["${HTTP_PUBLISH:-8080}:8080"]}
    for name in ("prometheus", "grafana"):
        assert published(SERVICES[name]) and all(
            p.startswith("127.0.0.1:") for p in published(SERVICES[name])
        ), name
    metrics_port = SERVICES["ingress"]["environment"]["METRICS_PORT"]
    assert not any(p.endswith(f":{metrics_port}") for s in SERVICES.values() for p in published(s))
    assert (
        SERVICES["ingress"]["environment"]["SKYTIDE_ENV"] == "production"
    )  # refuses /metrics on 8080
    assert not any("lifecycle" in arg for arg in SERVICES["prometheus"]["command"])
    assert not any("admin-api" in arg for arg in SERVICES["prometheus"]["command"])
    assert SERVICES["grafana"]["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_compose_refuses_an_unset_or_empty_password():
    text = (ROOT / "compose.yaml").read_text()
    for variable in PASSWORDS:
        uses = re.findall(r"\$\{" + variable + r"([^}]*)\}", text)
        assert uses, variable
        # ${VAR:?message}: compose stops, printing the message, when VAR is unset or empty
        assert all(use.startswith(":?") for use in uses), (variable, uses)
        assert env_example()[variable] == "", f".env.example gives {variable} a default"
    assert SERVICES["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )
    assert "--requirepass" in SERVICES["redis"]["command"]
    app_env = SERVICES["ingress"]["environment"]
    assert app_env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert "${POSTGRES_PASSWORD:?" in app_env["DATABASE_URL"]


def compose_default(value: str) -> int:
    """The default of a `${VAR:-default}` value, or the value itself."""
    found = re.fullmatch(r"\$\{[A-Z_]+:-(\d+)\}", str(value))
    return int(found.group(1) if found else value)


def test_the_app_reaches_postgres_through_pgbouncer_within_the_connection_budget():
    bouncer = SERVICES["pgbouncer"]["environment"]
    assert bouncer["POOL_MODE"] == "transaction" and bouncer["DB_HOST"] == "postgres"
    from tests.test_pgbouncer import SERVER_LOGIN_RETRY_S  # what the outage test ran with

    assert int(bouncer["SERVER_LOGIN_RETRY"]) == SERVER_LOGIN_RETRY_S
    for name in APP:  # migrate too: its lock is a transaction's (tests/test_pgbouncer.py)
        env = SERVICES[name]["environment"]
        assert "@pgbouncer:5432/" in env["DATABASE_URL"], name
        # transaction pooling: consecutive statements may reach different server connections,
        # so no prepared statement may outlive its transaction (tests/test_pgbouncer.py)
        assert env["DATABASE_STATEMENT_CACHE_SIZE"] == "0", name
        assert SERVICES[name]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    # The README's scaling example: `--scale agent=4 --scale enrich=2`.
    readme = (ROOT / "README.md").read_text()
    scale = dict(re.findall(r"--scale (\w+)=(\d+)", readme))
    assert scale == {"agent": "4", "enrich": "2"}, scale
    # every long-running process, plus migrate or one `docker compose run --rm migrate ...`
    processes = sum(int(scale.get(name, 1)) for name in APP - {"migrate"}) + 1
    pool_max = compose_default(SERVICES["ingress"]["environment"]["DATABASE_POOL_MAX"])
    assert processes * pool_max <= compose_default(bouncer["MAX_CLIENT_CONN"])
    max_connections = compose_default(SERVICES["postgres"]["command"][-1].split("=", 1)[1])
    headroom = 3 + 7  # PostgreSQL's superuser_reserved_connections; psql, a backup
    assert compose_default(bouncer["DEFAULT_POOL_SIZE"]) + headroom <= max_connections
    # Straight to PostgreSQL (no PgBouncer), the same processes would need this many:
    assert processes * pool_max + headroom > max_connections  # hence PgBouncer


def compose_yaml(path: Path) -> dict:
    """A compose file as compose reads it: `!reset` and `!override` are compose's own tags."""

    class Loader(yaml.SafeLoader):
        pass

    def tagged(loader, node):
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        return loader.construct_scalar(node)

    Loader.add_constructor("!reset", tagged)
    Loader.add_constructor("!override", tagged)
    return yaml.load(path.read_text(), Loader=Loader)


def test_the_tls_override_puts_caddy_in_front_of_the_ingress_only():
    tls = compose_yaml(DEPLOY / "compose.tls.yaml")
    assert set(tls["services"]) == {"ingress", "caddy"}
    assert "!reset []" in (DEPLOY / "compose.tls.yaml").read_text()  # the ingress unpublished
    assert tls["services"]["ingress"]["ports"] == []
    caddy = tls["services"]["caddy"]
    assert sorted(published(caddy)) == ["443:443", "443:443/udp", "80:80"]
    assert caddy["depends_on"]["ingress"]["condition"] == "service_healthy"
    assert caddy["environment"]["SKYTIDE_DOMAIN"].startswith("${SKYTIDE_DOMAIN:?")
    assert caddy["restart"] == "unless-stopped" and caddy["healthcheck"]["test"][0] == "CMD"
    # paths resolve from the project directory (compose.yaml's), as for any second -f file
    mount = next(v for v in caddy["volumes"] if v.endswith(":/etc/caddy/Caddyfile:ro"))
    caddyfile = ROOT / mount.split(":")[0]
    assert caddyfile == DEPLOY / "caddy" / "Caddyfile" and caddyfile.exists()
    for volume in ("caddy-data", "caddy-config"):
        assert volume in tls["volumes"]
    # The Caddyfile proxies the public routes to the ingress's HTTP_PORT, and nothing else.
    text = caddyfile.read_text()
    ingress_port = SERVICES["ingress"]["ports"][0].rsplit(":", 1)[1]
    upstreams = re.findall(r"reverse_proxy\s+(\S+)", text)
    assert upstreams == [f"ingress:{ingress_port}"]
    public = re.search(r"@public path (.+)", text).group(1).split()
    assert "/webhooks/*" in public and "/metrics" not in public and "/readyz" not in public


CADDY = shutil.which("caddy")


@pytest.mark.skipif(CADDY is None, reason="caddy not installed (Debian package caddy)")
def test_caddy_accepts_the_caddyfile(monkeypatch):
    # `caddy adapt` parses the Caddyfile into Caddy's JSON config without starting a server.
    env = {**os.environ, "SKYTIDE_DOMAIN": "chat.example.com"}
    adapted = subprocess.run(
        [CADDY, "adapt", "--config", str(DEPLOY / "caddy" / "Caddyfile"), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert adapted.returncode == 0, adapted.stderr
    config = json.loads(adapted.stdout)
    server = next(iter(config["apps"]["http"]["servers"].values()))
    assert ":443" in server["listen"]
    text = json.dumps(config)
    assert '"dial": "ingress:8080"' in text and "chat.example.com" in text


def test_alert_rules_and_dashboard_only_use_series_the_app_exports():
    known = metric_names()
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {
        "StageLagGrowing",
        "DeadLettersAppearing",
        "HighErrorRate",
        "NoMessagesSent",
        "DependencyDown",
    } <= set(alerts)
    for name, rule in alerts.items():
        assert series_in(rule["expr"]) <= known, (name, series_in(rule["expr"]) - known)
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "skytide.json").read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for wanted in (
        "Throughput",
        "Time in each stage p50 / p95",
        "End to end p50 / p95",
        "lag",
        "Errors by organization",
        "Message states",
        "cost per day",
    ):
        assert wanted in titles, wanted
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"
        for target in panel["targets"]:
            assert series_in(target["expr"]) <= known, (
                panel["title"],
                series_in(target["expr"]) - known,
            )
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["uid"] == "prometheus"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "skytide.yml").read_text()
    )
    mounts = SERVICES["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package prometheus; .ci/run installs it)",
)


@needs_promtool
def test_promtool_accepts_the_prometheus_configuration(tmp_path):
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == [
        "/etc/prometheus/alerts.yml"
    ]  # where compose mounts deploy/prometheus
    config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_checks_the_rules_and_proves_alerts_fire():
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", "alerts.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # alerts_test.yml: DeadLettersAppearing, StageLagGrowing, DependencyDown and NoMessagesSent fire (and stay
    # quiet before they should).
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    fired = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())
    firing = {
        case["alertname"]
        for test in fired["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert len(firing) >= 2
