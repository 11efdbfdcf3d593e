"""The cost of a turn on a realistic mix of conversations, through real `skytide run` processes.

python -m bench.mix [--quick] [--cpu SCRIPT,...]

Real worker processes (every role in each) on embedded Redis and PostgreSQL, the demo clinic's
catalogue in 4 organizations, the offline model, DEBOUNCE_SECONDS=0, the project's fake Gupshup
in this process (it also serves the media files). Each chat plays one script, a message at a
time, the next one THINK_S after the previous reply arrived (a person reads, then types; and the
sender paces replies to one person by RECIPIENT_INTERVAL_MS, 1 s):

  greeting      "hola"
  price         "¿cuánto cuesta el masaje relajante?"
  faq           "¿dónde quedan?"
  booking       a request with a day (availability searched and offered), then "la primera" (booked)
  cancellation  a booking as above, then "quiero cancelar mi cita", then "sí" (cancelled)
  voice, image  a voice note or a picture (downloaded; no Gemini key: its placeholder text)

The mix weighs them by messages: greetings 20%, prices 20%, FAQ 15%, booking steps 25%,
cancellation steps 15%, voice notes 3%, images 2%. Prints CPU per message by script (the worker
processes' CPU time over the messages of a step of that script alone), then per message on the
mix, and the capacity of one and two processes on the mix (the highest offered rate whose replies
all come within 1 s at p99), then the same for the price question alone in single-message chats
(the issue's probe: 50 chats/s for 20 s, with the rate replies completed at), beside baselines
measured in the same run: a bare consumer hop and a bare Pydantic AI run. Targets (issue 23): two
processes carry >= 60 msg/s of the mix, at most 20 ms CPU per message. Asserts nothing.

--cpu greeting,price: only the CPU per message of those scripts, one process (for A/B runs).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from typing import Any

import aiohttp

from bench import baselines
from bench.load import TOKEN, Child, cpu_s, pct, skytide
from ops.app.wiring import open_deps, run_async
from ops.embedded import free_port
from ops.settings import ALL_ROLES, Settings
from ops.system import services
from storage import keys
from storage.db import migrate
from storage.orgs import add_org
from storage.seed import seed_catalog
from tests.fakes.gupshup import FakeGupshup
from tests.helpers import fixture, text_webhook

P99_LIMIT_MS = 1000.0
THINK_S = 1.5
BOOK = ["quiero una cita de limpieza facial mañana en la tarde", "la primera"]
SCRIPTS: dict[str, list[str]] = {
    "greeting": ["hola"],
    "price": ["¿cuánto cuesta el masaje relajante?"],
    "faq": ["¿dónde quedan?"],
    "booking": BOOK,
    "cancellation": [*BOOK, "quiero cancelar mi cita", "sí"],
    "voice": ["<voice>"],
    "image": ["<image>"],
}
# Share of the mix's messages; a script's chats are started in proportion to share / length.
SHARES = {
    "greeting": 0.20,
    "price": 0.20,
    "faq": 0.15,
    "booking": 0.25,
    "cancellation": 0.15,
    "voice": 0.03,
    "image": 0.02,
}
_phones = itertools.count(3_100_000_000)


@dataclass(frozen=True)
class Plan:
    step_s: float
    kind_rate: float  # messages/s of a script alone, for its CPU per message
    rates: tuple[float, ...]  # offered mix rates for the capacity search
    price_rates: tuple[float, ...]  # offered rates of the price question alone
    price_step_s: float  # 20 s in the full run, as the probe at 50 msg/s


# The probe (50 single-message chats/s of the price question for 20 s) is one of the
# price steps; the search runs past a failed step until it has run the probe.
PROBE_RATE = 50.0
FULL = Plan(
    step_s=15,
    kind_rate=5,
    rates=(10, 20, 30, 45, 50, 60, 80),
    price_rates=(20, 30, 40, 45, PROBE_RATE, 60, 75),
    price_step_s=20,
)
QUICK = Plan(step_s=5, kind_rate=5, rates=(10, 30), price_rates=(PROBE_RATE,), price_step_s=5)


@dataclass
class Step:
    rate: float
    latencies_s: list[float] = field(default_factory=list)
    messages: int = 0
    missing: int = 0
    cpu_s: float = 0.0
    began: float = 0.0  # monotonic, the first message sent
    last_reply: float = 0.0  # monotonic, the last reply seen

    def p(self, q: float) -> float:
        return float("inf") if self.missing else pct(self.latencies_s, q) * 1000

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / max(1, self.messages) * 1000

    @property
    def completion_rate(self) -> float:
        """Replies a second from the first message sent to the last reply (the issue's figure)."""
        return len(self.latencies_s) / max(1e-9, self.last_reply - self.began)


class Driver:
    """Plays scripts against the ingress URLs and reads replies at the in-process fake."""

    def __init__(self, gupshup: FakeGupshup, apps: list[str]) -> None:
        self.gupshup, self.apps = gupshup, apps
        self.replies: dict[str, int] = {}
        self.arrived: dict[str, asyncio.Event] = {}
        self._seen = 0

    def watch(self) -> None:
        """Count the replies per chat since the last look; wake the chats that got one."""
        sent = self.gupshup.sent
        for message in sent[self._seen :]:
            self.replies[message.destination] = self.replies.get(message.destination, 0) + 1
            if event := self.arrived.get(message.destination):
                event.set()
        self._seen = len(sent)

    def body(self, app: str, phone: str, text: str, n: int) -> dict[str, Any]:
        message_id = f"mix-{phone}-{n}"
        now_ms = int(time.time() * 1000)
        if text in ("<voice>", "<image>"):
            kind, media = (
                ("audio", ("audio/ogg; codecs=opus", b"OggS" + os.urandom(2000)))
                if text == "<voice>"
                else ("image", ("image/jpeg", b"\xff\xd8\xff" + os.urandom(20_000)))
            )
            body = fixture(f"gupshup/gupshup_v2_{kind}.json", app=app, timestamp=now_ms)
            body["payload"].update(id=message_id, source=phone)
            body["payload"]["payload"].update(
                url=self.gupshup.add_media(media[1], media[0]), urlExpiry=now_ms + 3_600_000
            )
            body["payload"]["sender"].update(phone=phone, name="Ana")
            return body
        return text_webhook(app, phone, text, message_id, now_ms)

    async def chat(
        self, session: aiohttp.ClientSession, url: str, app: str, script: list[str], step: Step
    ) -> None:
        phone = f"57{next(_phones):010d}"
        self.arrived[phone] = asyncio.Event()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        for n, text in enumerate(script):
            if n:
                await asyncio.sleep(THINK_S)
            expected = self.replies.get(phone, 0) + 1
            started = time.time()
            step.messages += 1
            async with session.post(
                url + "/webhooks/gupshup", json=self.body(app, phone, text, n), headers=headers
            ) as response:
                await response.read()
            deadline = time.monotonic() + 30
            while self.replies.get(phone, 0) < expected and time.monotonic() < deadline:
                self.arrived[phone].clear()
                try:
                    await asyncio.wait_for(self.arrived[phone].wait(), 0.5)
                except TimeoutError:
                    self.watch()
            if self.replies.get(phone, 0) < expected:
                step.missing += len(script) - n
                return
            step.latencies_s.append(time.time() - started)
            step.last_reply = max(step.last_reply, time.monotonic())

    async def step(
        self,
        procs: list[Child],
        urls: list[str],
        mix: dict[str, float],
        rate: float,
        seconds: float,
    ) -> Step:
        """Start chats so that messages arrive at about `rate`/s for `seconds`, by `mix`."""
        step = Step(rate)
        kinds = list(mix)
        per_chat = sum(mix[k] * len(SCRIPTS[k]) for k in kinds) / sum(mix.values())
        chats_per_s = rate / per_chat
        n = max(1, int(chats_per_s * seconds))
        pick = random.Random(len(kinds) * 1000 + int(rate))
        before = sum(cpu_s(p.pid) for p in procs)
        watcher = asyncio.create_task(self._watching())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            tasks = []
            begin = step.began = time.monotonic()
            for i in range(n):
                delay = begin + i / chats_per_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                kind = pick.choices(kinds, weights=[mix[k] / len(SCRIPTS[k]) for k in kinds])[0]
                tasks.append(
                    asyncio.create_task(
                        self.chat(
                            session,
                            urls[i % len(urls)],
                            self.apps[i % len(self.apps)],
                            SCRIPTS[kind],
                            step,
                        )
                    )
                )
            await asyncio.gather(*tasks)
        watcher.cancel()
        step.cpu_s = sum(cpu_s(p.pid) for p in procs) - before
        return step

    async def _watching(self) -> None:
        while True:
            self.watch()
            await asyncio.sleep(0.02)


async def fleet(
    stack: AsyncExitStack, n: int, env: dict[str, str]
) -> tuple[list[Child], list[str]]:
    procs, urls = [], []
    for _ in range(n):
        port = free_port()
        child = skytide(",".join(ALL_ROLES), port, env)
        url = f"http://127.0.0.1:{port}"
        await child.start(ready=url + "/healthz")
        stack.push_async_callback(child.stop)
        procs.append(child)
        urls.append(url)
    return procs, urls


def line(label: str, step: Step, completion: bool = False) -> None:
    done = f"; completed {step.completion_rate:5.1f} msg/s" if completion else ""
    print(
        f"  {label:<14} (load {os.getloadavg()[0]:4.1f}): p50 {step.p(0.5):7.1f} ms  p99 "
        f"{step.p(0.99):7.1f} ms  ({len(step.latencies_s)}/{step.messages} replied); "
        f"CPU {step.cpu_ms:5.1f} ms/message{done}",
        flush=True,
    )


def capacity_line(best: float, rates: tuple[float, ...]) -> str:
    return f"{best:.0f} msg/s" if best else f"below {rates[0]:.0f} msg/s" if rates else "not run"


async def search(
    driver: Driver,
    procs: list[Child],
    urls: list[str],
    mix: dict[str, float],
    label: str,
    rates: tuple[float, ...],
    seconds: float,
    run_through: float = 0.0,
) -> float:
    """The highest of `rates` whose replies all come within 1 s at p99 (0 if none); rates are
    tried rising and the search stops at the first that fails, once it has run `run_through`."""
    best, failed = 0.0, False
    for rate in rates:
        if failed and rate > run_through:
            break
        run = await driver.step(procs, urls, mix, rate, seconds)
        line(f"{label} {rate:.0f} msg/s", run, completion=label == "price")
        if run.p(0.99) >= P99_LIMIT_MS:
            failed = True
        elif not failed:
            best = rate
    return best


async def main(plan: Plan, cpu_only: list[str] | None = None) -> None:
    print(
        f"mix bench ({'quick' if plan is QUICK else 'full'}); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: compare with the same-run baselines",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(skytide_env="development", data_dir=Path(tmp), log_level="WARNING")
        async with (
            services(base) as settings,
            open_deps(settings) as deps,
            FakeGupshup() as gupshup,
        ):
            await migrate(deps.pool)
            hop_cpu, _ = await baselines.bare_hop(deps.redis)
            agent_ms = await baselines.bare_agent_cpu_ms(requests=2)
            print(
                f"baselines: bare consumer hop {hop_cpu:.2f} ms CPU per entry (a message crosses"
                f" 4 stages); bare Pydantic AI run (one tool, 2 model requests) {agent_ms:.2f} ms",
                flush=True,
            )
            apps = []
            for i in range(4):
                app = f"mix-{i}"
                org = await add_org(
                    deps.pool,
                    name=f"Mix {i}",
                    app_name=app,
                    api_key="bench-key",
                    source_phone="573009990000",
                    webhook_token=TOKEN,
                )
                await seed_catalog(deps.pool, org)
                await deps.redis.sadd(keys.ORG_REGISTRY, org)
                apps.append(app)
            env = {
                "SKYTIDE_ENV": "development",
                "REDIS_URL": str(settings.redis_url),
                "DATABASE_URL": str(settings.database_url),
                "GUPSHUP_API_URL": gupshup.url,
                "DEBOUNCE_SECONDS": "0",
                "LLM_MODEL": "offline",
                "LOG_LEVEL": "WARNING",
                "DATA_DIR": tmp,
                "MEDIA_DIR": f"{tmp}/media",
                "MEDIA_ALLOWED_HOSTS": "127.0.0.1",
                "CLAIM_IDLE_MS": "60000",
            }
            driver = Driver(gupshup, apps)
            for n in (1,) if cpu_only else (1, 2):
                print(f"{n} process{'es' if n > 1 else ''} (every role), 4 organizations:")
                async with AsyncExitStack() as stack:
                    procs, urls = await fleet(stack, n, env)
                    await driver.step(procs, urls, {"greeting": 1}, 10, 5)  # warm
                    if n == 1:
                        print("  CPU per message by script, each alone:", flush=True)
                        for kind in cpu_only or SCRIPTS:
                            run = await driver.step(
                                procs, urls, {kind: 1}, plan.kind_rate, plan.step_s
                            )
                            line(kind, run)
                    if cpu_only:
                        return
                    mix = await search(driver, procs, urls, SHARES, "mix", plan.rates, plan.step_s)
                    # The price question alone, single-message chats, as the issue probed it.
                    price = await search(
                        driver,
                        procs,
                        urls,
                        {"price": 1},
                        "price",
                        plan.price_rates,
                        plan.price_step_s,
                        run_through=PROBE_RATE,
                    )
                print(
                    f"  capacity with p99 < 1 s: mix {capacity_line(mix, plan.rates)}, price question "
                    f"{capacity_line(price, plan.price_rates)} (target: the mix with 2 processes >= 60 "
                    "msg/s; CPU <= 20 ms/message)",
                    flush=True,
                )


if __name__ == "__main__":
    args = sys.argv[1:]
    only = args[args.index("--cpu") + 1].split(",") if "--cpu" in args else None
    run_async(main(QUICK if "--quick" in args else FULL, only))
