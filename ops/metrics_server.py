"""/metrics, /healthz and /readyz on METRICS_PORT, for every process (the ingress's too).

A worker scaled with `docker compose up --scale agent=4` is scraped and health-checked like the
ingress: Prometheus finds each replica by DNS and scrapes it here. The public webhook port
serves neither /metrics nor /readyz in production (only in development, when METRICS_PORT is
unset): they tell whoever asks which dependency is down and how much traffic each tenant has.
"""

from __future__ import annotations

from aiohttp import web

from ops import health, metrics
from ops.outages import Dependency, readiness_details
from ops.deps import Deps

DEPS = web.AppKey("metrics_deps", Deps)
# What /readyz requires. A process that is only the ingress takes webhooks while PostgreSQL is
# down (ingress/orgs.py): not ready then would take it out of a load balancer for nothing.
READY_NEEDS = web.AppKey("metrics_ready_needs", tuple)


def ready_needs(roles: tuple[str, ...]) -> tuple[Dependency, ...]:
    """The dependencies a process with these roles needs to be ready."""
    redis, postgres = Dependency.REDIS, Dependency.POSTGRES
    return (redis,) if set(roles) == {"ingress"} else (redis, postgres)


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=await metrics.render_sampled(), content_type="text/plain")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    checks = await health.check(deps)
    ready = all(checks[name] == "ok" for name in request.app[READY_NEEDS])
    body: dict[str, object] = {
        "ready": ready,
        **checks,
        **await readiness_details(deps.redis, deps.outages),
    }
    return web.json_response(body, status=200 if ready else 503)


def add_routes(
    app: web.Application,
    deps: Deps,
    needs: tuple[Dependency, ...] = (Dependency.REDIS, Dependency.POSTGRES),
) -> None:
    """/metrics and /readyz (and /healthz, unless the app has its own) on `app`."""
    app[DEPS] = deps
    app[READY_NEEDS] = needs
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/readyz", readyz)


def create_app(
    deps: Deps, needs: tuple[Dependency, ...] = (Dependency.REDIS, Dependency.POSTGRES)
) -> web.Application:
    app = web.Application()
    add_routes(app, deps, needs)
    app.router.add_get("/healthz", healthz)
    return app


async def start(
    deps: Deps,
    host: str,
    port: int,
    needs: tuple[Dependency, ...] = (Dependency.REDIS, Dependency.POSTGRES),
) -> web.AppRunner:
    """Serving until the returned runner's cleanup()."""
    # Idle connections closed like the ingress's (aiohttp keeps them an hour by default).
    runner = web.AppRunner(
        create_app(deps, needs),
        access_log=None,
        keepalive_timeout=deps.settings.http_keepalive_timeout_s,
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
