"""Shared plumbing for the local fake servers.

Every fake is a real aiohttp server bound to 127.0.0.1 on a free port, running inside
the caller's event loop, so the code under test talks real HTTP (real clients, real
serialisation, real timeouts) and nothing is patched.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import web
from aiohttp.typedefs import Handler


class FakeServer:
    """Base class: start/stop, request recording, scripted failures, artificial delay."""

    def __init__(self) -> None:
        self.url: str = ""  # "http://127.0.0.1:PORT" once started
        # 0.0.0.0 for callers in containers (make test-deploy); self.url stays the loopback one.
        self.bind_host = "127.0.0.1"
        self.port: int = 0
        self.requests: list[dict[str, Any]] = []
        self.delay_s: float = 0.0  # applied by the subclasses' main endpoints
        self._failures: deque[tuple[int, Any]] = deque()
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._record], client_max_size=200 * 1024 * 1024)
        self.setup_routes(self.app.router)

    # -- subclass hooks ---------------------------------------------------------------
    def setup_routes(self, router: web.UrlDispatcher) -> None:  # pragma: no cover
        raise NotImplementedError

    async def on_start(self) -> None:
        """Called after the port is bound (self.url is valid)."""

    async def on_stop(self) -> None:
        """Called before the server is torn down."""

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> "FakeServer":
        # Bind the socket ourselves: port 0 gives a free port with no race and no use of
        # aiohttp private attributes to find out which port was picked.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.bind_host, 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short shutdown timeout: a test that leaves a slow/streaming request behind
        # must not make stop() hang for aiohttp's default 60 s.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        await self.on_start()
        return self

    async def stop(self) -> None:
        await self.on_stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- helpers for subclasses ---------------------------------------------------------
    def queue_failure(self, status: int, times: int, body: Any) -> None:
        for _ in range(times):
            self._failures.append((status, body))

    def take_failure(self) -> tuple[int, Any] | None:
        return self._failures.popleft() if self._failures else None

    async def sleep_delay(self) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["path"].startswith(path_prefix) and (method is None or r["method"] == method)
        ]

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # request.read() caches the body, so handlers can still call .json()/.post().
        body = await request.read()
        entry: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "body": body,
            "json": None,
            "form": None,
            "files": None,
        }
        ctype = request.content_type
        if ctype == "application/json" and body:
            try:
                entry["json"] = json.loads(body)
            except ValueError:
                pass
        elif ctype == "application/x-www-form-urlencoded":
            entry["form"] = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        elif ctype == "multipart/form-data":
            fields = parse_multipart(body, request.headers["Content-Type"])
            entry["form"] = {
                k: v[2].decode("utf-8", "replace") for k, v in fields.items() if v[0] is None
            }
            entry["files"] = {k: v for k, v in fields.items() if v[0] is not None}
        self.requests.append(entry)
        return await handler(request)


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, str, bytes]]:
    """multipart/form-data -> {field: (filename or None, content type, bytes)}.

    The recording middleware has already consumed the request stream, so handlers
    can't use request.post() for multipart (it reads the stream, not the cached body);
    the stdlib MIME parser works on the cached bytes instead.
    """
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    out: dict[str, tuple[str | None, str, bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        payload = part.get_payload(decode=True)  # bytes for a leaf part like these
        data = payload if isinstance(payload, bytes) else b""
        out[str(name)] = (part.get_filename(), part.get_content_type(), data)
    return out
