"""Pipeline bench plumbing: worker processes, the fake Gupshup in its own process, open-loop load.

Everything that is measured runs in its own process, as in production: `skytide run` workers, a
fake Gupshup that timestamps each send request, and the bare baselines. This process only sends
webhooks on a fixed schedule (open loop: a slow system does not slow the offered load down) and
matches each reply to its webhook by the customer's phone number.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from ops.app.wiring import run_async
from tests.fakes.gupshup import FakeGupshup
from tests.helpers import text_webhook

TOKEN = "bench-token-0000"  # 12 characters at least, like any webhook token
LATE_S = 5.0
_TICK_S = os.sysconf("SC_CLK_TCK")
_phones = itertools.count(1)


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK_S


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Child:
    """A process the bench starts, measures (CPU) and stops."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args, self.env = args, env
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, ready: str | None = None, timeout_s: float = 60.0) -> str:
        """Start; ready is a URL to poll until it answers 200, "line" to read the URL the child
        prints, or None for a process with no port (given a few seconds to join its groups)."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.args,
            env={**os.environ, **(self.env or {})},
            stdout=asyncio.subprocess.PIPE if ready == "line" else None,
        )
        if ready == "line":
            assert self.proc.stdout is not None  # a pipe, asked for above
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
            return line.decode().strip()
        if ready:
            await wait_http(ready, timeout_s)
            return ready
        await asyncio.sleep(4)
        return ""

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.args[0]} was not started")
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up within {timeout_s:.0f}s")
            await asyncio.sleep(0.2)


def skytide(roles: str, port: int, settings_env: dict[str, str]) -> Child:
    """A real `skytide run` worker process (the console script, or `python -m ops` without it)."""
    script = shutil.which("skytide", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "ops"]
    return Child([*command, "run", "--roles", roles], {**settings_env, "HTTP_PORT": str(port)})


@dataclass
class Run:
    """One load step: what was offered and when each reply came."""

    rate_per_s: float
    sent_at: dict[str, float] = field(default_factory=dict)  # phone -> webhook POST start
    http_ms: list[float] = field(default_factory=list)  # webhook round trips
    failed_posts: int = 0
    latencies_s: list[float] = field(default_factory=list)
    missing: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # process label -> CPU used

    @property
    def messages(self) -> int:
        return len(self.sent_at)

    @property
    def late(self) -> int:
        return self.missing + sum(1 for x in self.latencies_s if x > LATE_S)

    def p(self, q: float) -> float:
        if self.missing:
            return float("inf")
        return pct(self.latencies_s, q) * 1000

    def cpu_ms_per_message(self, label: str | None = None) -> float:
        total = self.cpu_s.get(label, 0.0) if label else sum(self.cpu_s.values())
        return total / max(1, self.messages) * 1000


async def offer(
    urls: list[str],
    apps: list[str],
    rate_per_s: float,
    duration_s: float,
    tag: str,
    path: str = "/webhooks/gupshup",
    tokens: Mapping[str, str] | None = None,
) -> Run:
    """Send one single-message chat every 1/rate seconds, round-robin over urls and apps (each
    app's webhook token from `tokens`, else TOKEN)."""
    run = Run(rate_per_s)
    n = max(1, int(rate_per_s * duration_s))
    bodies = []
    for i in range(n):
        phone = f"57{next(_phones):010d}"  # a new chat every time, across the whole bench
        bodies.append(
            (
                phone,
                json.dumps(
                    text_webhook(
                        apps[i % len(apps)], phone, "hola", f"{tag}-{i}", int(time.time() * 1000)
                    )
                ),
            )
        )
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int, phone: str, body: str) -> None:
            started = time.time()
            run.sent_at[phone] = started
            try:
                app = apps[i % len(apps)]
                own = {**headers, "Authorization": f"Bearer {tokens[app]}"} if tokens else headers
                async with session.post(
                    urls[i % len(urls)] + path, data=body, headers=own
                ) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                run.http_ms.append((time.time() - started) * 1000)
            else:
                run.failed_posts += 1
                run.sent_at.pop(phone, None)

        tasks = []
        begin = time.monotonic()
        for i, (phone, body) in enumerate(bodies):
            delay = begin + i / rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i, phone, body)))
        await asyncio.gather(*tasks)
    return run


async def closed_loop_rps(
    url: str, apps: list[str], duration_s: float, tag: str, concurrency: int = 32
) -> tuple[float, int]:
    """(requests per second, requests) with `concurrency` webhooks always in flight."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    done = 0
    deadline = time.monotonic() + duration_s
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker(w: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < deadline:
                i += 1
                body = json.dumps(
                    text_webhook(
                        apps[(w + i) % len(apps)],
                        f"57{next(_phones):010d}",
                        "hola",
                        f"{tag}-{w}-{i}",
                        int(time.time() * 1000),
                    )
                )
                async with session.post(
                    url + "/webhooks/gupshup", data=body, headers=headers
                ) as response:
                    await response.read()
                    done += response.status == 200

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return done / (time.monotonic() - started), done


async def collect(run: Run, gupshup_url: str, settle_s: float) -> None:
    """Match replies to webhooks; give up on the rest settle_s after the last reply came."""
    waiting = dict(run.sent_at)
    async with aiohttp.ClientSession() as session:
        last_progress = time.monotonic()
        while waiting and time.monotonic() - last_progress < settle_s:
            async with session.post(gupshup_url + "/bench/sent", json=list(waiting)) as response:
                found = await response.json()
            for phone, received_at in found.items():
                if phone in waiting:
                    run.latencies_s.append(received_at - waiting.pop(phone))
                    last_progress = time.monotonic()
            await asyncio.sleep(0.25)
    run.missing = len(waiting)


# ---- the fake Gupshup, served from its own process ----------------------------------------------


async def serve_fake_gupshup() -> None:
    """The project's fake Gupshup plus POST /bench/sent [phones]: first send time of each."""
    fake = FakeGupshup()
    first: dict[str, float] = {}

    async def sent(request: web.Request) -> web.Response:
        for message in fake.sent:
            first.setdefault(message.destination, message.received_at)
        fake.sent.clear()
        fake.requests.clear()  # keep the fake's memory flat over a long bench
        return web.json_response({p: first[p] for p in await request.json() if p in first})

    fake.app.router.add_post("/bench/sent", sent)
    async with fake:
        print(fake.url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["--fake-gupshup"]:
        run_async(serve_fake_gupshup())
