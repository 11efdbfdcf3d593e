"""Where an HTTP request stood when it failed: before its first byte was written, or after.

A POST that fails before any of it was written surely did nothing at the server, so sending it
again is safe; one that fails later (a read timeout, a dropped connection, a 5xx) may have done
everything. aiohttp tells the two apart only through its tracing signals: a connection is handed
to the request, newly created or reused from the pool, right before the request is written.

`trace_config()` is installed once on a session (ops/app/wiring.py). A caller passes a
`BeforeWrite` as the request's `trace_request_ctx`; its callback is awaited at that moment, so
whatever it records (that the send may be on the wire) is durable before a byte can reach the
server. An exception from the callback aborts the request before it is written.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Awaitable, Callable

import aiohttp

_MARK = "_skytide_before_write"


class BeforeWrite:
    """One request's hook: `ran` says whether the request got past the callback (and so may
    have been written)."""

    def __init__(self, callback: Callable[[], Awaitable[None]]) -> None:
        self.callback = callback
        self.ran = False

    async def run(self) -> None:
        if self.ran:
            return  # a redirect reconnects; the request was marked once already
        await self.callback()
        self.ran = True  # only once the callback succeeded: if it failed, nothing was written


def trace_config() -> aiohttp.TraceConfig:
    config = aiohttp.TraceConfig()

    async def connection_ready(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceConnectionCreateEndParams | aiohttp.TraceConnectionReuseconnParams,
    ) -> None:
        hook = context.trace_request_ctx
        if isinstance(hook, BeforeWrite):
            await hook.run()

    # Exactly one of the two fires for every request, after the connection exists and before
    # the request is written (aiohttp's connector: create_end, or reuseconn from the pool).
    config.on_connection_create_end.append(connection_ready)
    config.on_connection_reuseconn.append(connection_ready)
    setattr(config, _MARK, True)
    return config


def installed(session: aiohttp.ClientSession) -> bool:
    """Whether `session` runs BeforeWrite hooks (without it, every failure looks like "never
    left", and a send that did arrive would be repeated)."""
    return any(getattr(config, _MARK, False) for config in session.trace_configs)
