"""/metrics, /healthz and /readyz for a process without the ingress role (METRICS_PORT).

A worker scaled with `docker compose up --scale agent=4` is scraped and health-checked like the
ingress: Prometheus finds each replica by DNS and scrapes it here.
"""

from __future__ import annotations

from aiohttp import web

from ops import health, metrics
from ops.outages import readiness_details
from ops.deps import Deps

DEPS = web.AppKey("deps", Deps)


async def metrics_view(request: web.Request) -> web.Response:
    return web.Response(body=await metrics.render_sampled(), content_type="text/plain")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    checks = await health.check(deps)
    ready = all(v == "ok" for v in checks.values())
    body = {"ready": ready, **checks, **await readiness_details(deps.redis, deps.outages)}
    return web.json_response(body, status=200 if ready else 503)


def create_app(deps: Deps) -> web.Application:
    app = web.Application()
    app[DEPS] = deps
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def start(deps: Deps, host: str, port: int) -> web.AppRunner:
    """Serving until the returned runner's cleanup()."""
    # Idle connections closed like the ingress's (aiohttp keeps them an hour by default).
    runner = web.AppRunner(create_app(deps), access_log=None,
                           keepalive_timeout=deps.settings.http_keepalive_timeout_s)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
