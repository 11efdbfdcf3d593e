"""Media links come from webhook payloads, so they are the caller's choice: only the hosts in
MEDIA_ALLOWED_HOSTS are fetched, redirects are checked against the same list, private and
loopback addresses are refused unless listed, and an error body is never read whole."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from consumers.media import MediaDownloader, MediaUnavailable
from ops.settings import Settings
from storage.events import Media
from storage.media_store import LocalMediaStore

DATA = b"OggS" + b"\x00" * 2000


class Host:
    """A small HTTP server that serves a file, redirects, and an endless error body."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.url = ""
        app = web.Application()
        app.router.add_get("/file", self.file)
        app.router.add_get("/to/{target:.*}", self.redirect)
        app.router.add_get("/endless-404", self.endless)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)

    async def file(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        return web.Response(body=DATA, content_type="audio/ogg")

    async def redirect(self, request: web.Request) -> web.Response:
        self.hits.append(request.path)
        raise web.HTTPFound(request.match_info["target"].replace("PORT", str(self.port)))

    async def endless(self, request: web.Request) -> web.StreamResponse:
        self.hits.append(request.path)
        response = web.StreamResponse(status=404)
        await response.prepare(request)
        while True:  # a body that never ends: only a bounded read can answer
            await response.write(b"x" * 4096)
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> "Host":
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()


def downloader(allowed: str, **kw) -> MediaDownloader:
    return MediaDownloader(
        Settings(media_allowed_hosts=allowed, media_retry_base_s=0.01, media_timeout_s=5, **kw)
    )


async def fetch(d: MediaDownloader, url: str, tmp_path) -> bytes:
    try:
        stored = await d.fetch(Media(url=url), "voice", LocalMediaStore(tmp_path), "o/c/m.ogg", 0)
    finally:
        await d.aclose()
    return stored.local_path.read_bytes()


async def test_the_default_list_refuses_a_host_of_the_deployments_own_network(tmp_path):
    async with Host() as host:
        with pytest.raises(MediaUnavailable) as refused:
            await fetch(MediaDownloader(Settings(media_timeout_s=5)), f"{host.url}/file", tmp_path)
        assert refused.value.reason == "refused"
        assert host.hits == []  # not a single request went out


async def test_a_listed_host_is_fetched(tmp_path):
    async with Host() as host:
        assert await fetch(downloader("127.0.0.1"), f"{host.url}/file", tmp_path) == DATA


async def test_redirects_are_checked_against_the_list(tmp_path):
    async with Host() as host:
        inside = await fetch(
            downloader("127.0.0.1"), f"{host.url}/to/http://127.0.0.1:PORT/file", tmp_path
        )
        with pytest.raises(MediaUnavailable) as outside:
            await fetch(
                downloader("127.0.0.1"), f"{host.url}/to/http://localhost:PORT/file", tmp_path
            )
        assert inside == DATA and outside.value.reason == "refused"
        assert host.hits.count("/file") == 1


async def test_a_listed_name_that_resolves_to_a_loopback_address_is_refused(tmp_path):
    """DNS can point an allowed name anywhere: the address itself must be public or listed."""
    async with Host() as host:
        with pytest.raises(MediaUnavailable) as refused:
            await fetch(downloader("localhost"), f"http://localhost:{host.port}/file", tmp_path)
        assert refused.value.reason == "refused" and host.hits == []
        for bad in (
            "ftp://127.0.0.1/file",
            "file:///etc/passwd",
            "http://[::1]/file",
            "http://169.254.169.254/latest/meta-data/",
        ):
            with pytest.raises(MediaUnavailable) as exc:
                await fetch(downloader("localhost,*.gupshup.io"), bad, tmp_path)
            assert exc.value.reason == "refused"


async def test_an_error_body_is_read_only_up_to_a_small_limit(tmp_path):
    async with Host() as host:
        with pytest.raises(MediaUnavailable) as missing:
            await fetch(downloader("127.0.0.1"), f"{host.url}/endless-404", tmp_path)
    assert missing.value.reason == "not_found" and len(str(missing.value)) < 400
