"""make test-soak: nothing acknowledged is lost while workers crash and dependencies go away.

Real processes on a real Redis 8 (AOF, appendfsync everysec) and a real PostgreSQL: one ingress
and SOAK_WORKERS worker processes (`skytide run`), replies going to the fake Gupshup, which this
script also drives as the customers' side: text bursts, images, and the status callbacks of
every reply. While the messages come in, a random worker is SIGKILLed every few seconds and
started again, PostgreSQL is stopped for 15 s once, and Redis is restarted (from its AOF)
once; then the pipeline is left to drain (up to --settle-s) before anything is counted.

At the end, measured from outside:
  lost        a webhook answered 200 whose message has no stored row, or a chat whose last
              message got no reply after it
  duplicated  Gupshup sends beyond one per outgoing message row
  pending     stream entries unread or unacknowledged, and chats still waiting for a turn
  dead letters, each with its stage and error
It prints `lost 0, duplicated 0, pending 0, dead letters N` and exits 1 unless the first three
are 0.

    python -m tests.soak [--messages 2000] [--orgs 20] [--workers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ops.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from ops.embedded_cluster import EmbeddedRedisCluster
from storage import dead_letters, keys
from storage.db import create_pool, migrate
from storage.orgs import add_org
from storage.redis_client import create_redis
from storage.keys import Stage, Stream
from tests.fakes.gupshup import FakeGupshup
from tests.helpers import fixture, text_webhook

TOKEN = "soak-webhook-token"
WORKER_ROLES = "enrich,batcher,agent,sender"
TEXTS = [
    "hola",
    "buenas tardes",
    "¿qué servicios tienen?",
    "¿cuánto cuesta?",
    "gracias",
    "¿atienden el sábado?",
    "hola, una pregunta",
    "ok",
]


@dataclass
class Chat:
    app: str
    phone: str
    accepted: list[str] = field(default_factory=list)  # provider ids answered 200
    last_accepted_at: float = 0.0  # time.time() of the last 200


@dataclass
class Run:
    args: argparse.Namespace
    root: Path
    redis_server: EmbeddedRedis | EmbeddedRedisCluster
    postgres: EmbeddedPostgres
    gupshup: FakeGupshup
    ingress_url: str
    env: dict[str, str]
    workers: list[subprocess.Popen | None] = field(default_factory=list)
    kills: int = 0
    restarts: int = 0
    webhook_retries: int = 0
    orgs: list[str] = field(default_factory=list)
    statuses_posted: int = 0
    log: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        self.log.append(line)
        print(line, flush=True)


# ---- processes ----------------------------------------------------------------------------


def start_process(run: Run, roles: str, extra: dict[str, str] | None = None) -> subprocess.Popen:
    log = open(run.root / f"{roles.split(',')[0]}-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "ops", "run", "--roles", roles],
        env={**run.env, **(extra or {})},
        stdout=log,
        stderr=log,
    )


async def supervise(run: Run, stop: asyncio.Event) -> None:
    """What a process manager does: a worker that exited (killed, or could not start while
    PostgreSQL was down) is started again."""
    while not stop.is_set():
        for i, worker in enumerate(run.workers):
            if worker is None or worker.poll() is not None:
                run.workers[i] = start_process(run, WORKER_ROLES)
                run.restarts += 1
        await asyncio.sleep(0.5)


async def kill_workers(run: Run, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await _sleep(stop, run.args.kill_every_s)
        alive = [w for w in run.workers if w is not None and w.poll() is None]
        if alive and not stop.is_set():
            victim = random.choice(alive)
            victim.send_signal(signal.SIGKILL)
            run.kills += 1


async def faults(run: Run, stop: asyncio.Event) -> None:
    await _sleep(stop, run.args.postgres_at_s)
    if stop.is_set():
        return
    run.note(f"PostgreSQL stopped for {run.args.postgres_down_s:.0f}s")
    await asyncio.to_thread(run.postgres.pause)
    await _sleep(stop, run.args.postgres_down_s)
    await asyncio.to_thread(run.postgres.resume)
    run.note("PostgreSQL is back")
    await _sleep(stop, run.args.redis_after_s)
    if isinstance(run.redis_server, EmbeddedRedisCluster):
        await cluster_faults(run, run.redis_server, stop)
        return
    run.note("Redis restarting (it reloads its AOF)")
    await asyncio.to_thread(run.redis_server.stop)
    await asyncio.to_thread(run.redis_server.start)
    run.note("Redis is back")


async def cluster_faults(run: Run, cluster: EmbeddedRedisCluster, stop: asyncio.Event) -> None:
    """On a Redis Cluster: a planned failover (the replica takes over once it has caught up),
    then a primary killed with SIGKILL (its replica is promoted after the node timeout)."""
    first = cluster.primary_of(keys.stream(run.orgs[0], Stream.INBOUND))
    run.note(f"Redis Cluster: CLUSTER FAILOVER of primary {first.address}")
    promoted = await asyncio.to_thread(cluster.failover, first)
    run.note(f"Redis Cluster: {promoted.address} is primary")
    await _sleep(stop, run.args.redis_after_s)
    victim = cluster.primary_of(keys.stream(run.orgs[-1], Stream.INBOUND))
    run.note(f"Redis Cluster: SIGKILL of primary {victim.address}")
    await asyncio.to_thread(cluster.kill, victim)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


# ---- the customers' side ------------------------------------------------------------------


async def post(run: Run, http: aiohttp.ClientSession, body: dict, deadline: float) -> bool:
    """Like Gupshup: a webhook that did not get a 2xx is sent again (here until deadline)."""
    while time.monotonic() < deadline:
        try:
            async with http.post(
                run.ingress_url + "/webhooks/gupshup",
                json=body,
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                if response.status == 200:
                    return True
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        run.webhook_retries += 1
        await asyncio.sleep(0.5)
    return False


def image_webhook(app: str, phone: str, message_id: str, url: str) -> dict:
    body = fixture("gupshup/gupshup_v2_image.json", app=app, timestamp=int(time.time() * 1000))
    body["payload"].update(id=message_id, source=phone)
    body["payload"]["payload"].update(
        url=url, caption="mira esta foto", urlExpiry=int(time.time() * 1000) + 3_600_000
    )
    body["payload"]["sender"].update(phone=phone, name="Cliente")
    return body


async def customers(run: Run, chats: list[Chat], http: aiohttp.ClientSession) -> int:
    """Feed args.messages messages in bursts of 1 to 4, spread over args.feed_s seconds."""
    bursts: list[tuple[Chat, int]] = []
    left = run.args.messages
    while left > 0:
        size = min(left, random.choice((1, 1, 2, 3, 4)))
        bursts.append((random.choice(chats), size))
        left -= size
    gap_s = run.args.feed_s / len(bursts)
    busy: set[str] = set()  # one burst per chat at a time, as a person types
    tasks: list[asyncio.Task] = []
    image = b"\xff\xd8\xff\xe0" + os.urandom(2048)
    sequence = 0

    async def burst(chat: Chat, size: int, first: int) -> None:
        try:
            for n in range(size):
                provider_id = f"soak-{first + n}"
                if random.random() < run.args.media_share:
                    url = run.gupshup.add_media(image, "image/jpeg")
                    body = image_webhook(chat.app, chat.phone, provider_id, url)
                else:
                    body = text_webhook(
                        chat.app,
                        chat.phone,
                        random.choice(TEXTS),
                        provider_id,
                        int(time.time() * 1000),
                    )
                if await post(run, http, body, time.monotonic() + 120):
                    chat.accepted.append(provider_id)
                    chat.last_accepted_at = time.time()
                await asyncio.sleep(random.uniform(0.05, 0.3))
        finally:
            busy.discard(chat.phone)

    for chat, size in bursts:
        while chat.phone in busy:  # wait (never spin: the faults run in this loop too)
            await asyncio.sleep(0.05)
            chat = random.choice(chats)
        busy.add(chat.phone)
        tasks.append(asyncio.create_task(burst(chat, size, sequence)))
        sequence += size
        await asyncio.sleep(gap_s)
    await asyncio.gather(*tasks)
    return sum(len(c.accepted) for c in chats)


async def status_callbacks(run: Run, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
    """Each reply Gupshup took is reported sent, delivered and read, under its own app."""
    done = 0
    while not stop.is_set() or done < len(run.gupshup.sent):
        sent = run.gupshup.sent[done:]
        done += len(sent)
        for message in sent:
            for status in ("sent", "delivered", "read"):
                body = run.gupshup.build_status(
                    message.message_id, status, destination=message.destination
                )
                body["app"] = message.app
                if await post(run, http, body, time.monotonic() + 60):
                    run.statuses_posted += 1
        await asyncio.sleep(0.2)


# ---- measuring ----------------------------------------------------------------------------


def unanswered(run: Run, chats: list[Chat]) -> list[Chat]:
    last_reply: dict[tuple[str, str], float] = {}
    for message in run.gupshup.sent:
        key = (message.app, message.destination)
        last_reply[key] = max(last_reply.get(key, 0.0), message.received_at)
    return [
        c
        for c in chats
        if c.accepted and last_reply.get((c.app, c.phone), 0.0) < c.last_accepted_at
    ]


async def pending_work(redis, orgs: list[str]) -> int:
    for _ in range(30):  # this script's own connection may meet the Redis restart first
        try:
            return await _pending_work(redis, orgs)
        except (RedisConnectionError, RedisTimeoutError):
            await asyncio.sleep(1)
    return await _pending_work(redis, orgs)


async def _pending_work(redis, orgs: list[str]) -> int:
    total = 0
    for org in orgs:
        for group, name in keys.STAGE_STREAM.items():
            if group is Stage.WEBHOOKS:
                continue  # the CRM's endpoints: no part of a conversation's work
            stream = keys.stream(org, name)
            if not await redis.exists(stream):
                continue
            for info in await redis.xinfo_groups(stream):
                if info["name"] == group:
                    total += int(info["pending"]) + int(info.get("lag") or 0)
        total += await redis.zcard(keys.due(org))
    return total


async def open_sends(pool) -> int:
    """Replies on the wire or in doubt (storage/send_doubts.py): not settled yet, so the
    pipeline has not drained (a send in doubt is resent only once its grace ends)."""
    for _ in range(30):  # PostgreSQL may be the one stopped just now
        try:
            return await pool.fetchval(
                "select count(*) from chat_messages where direction = 'outbound'"
                " and send_started_at is not null and provider_message_id is null"
                " and message_status <> 'failed'"
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(1)
    return -1


async def measure(run: Run, chats: list[Chat], orgs: list[str], pool, redis) -> int:
    accepted = [pid for c in chats for pid in c.accepted]
    stored = {
        r["provider_message_id"]
        for r in await pool.fetch(
            "select provider_message_id from chat_messages where direction = 'inbound'"
        )
    }
    missing_rows = [pid for pid in accepted if pid not in stored]
    silent = unanswered(run, chats)
    rows = await pool.fetch(
        "select provider_message_id, (send_started_at is not null and provider_message_id is null"
        " and message_status = 'failed') as unknown from chat_messages where direction = 'outbound'"
    )
    recorded = {r["provider_message_id"] for r in rows if r["provider_message_id"]}
    unknown = sum(1 for r in rows if r["unknown"])
    resent, confirmed = await pool.fetchrow(
        "select coalesce(sum(send_resends), 0), count(*) filter (where artifacts ? 'send_evidence')"
        " from chat_messages where direction = 'outbound'"
    )
    unrecorded_sends = sum(1 for m in run.gupshup.sent if m.message_id not in recorded)
    # A send given up on in doubt (past SEND_DOUBT_MAX_S) is "outcome unknown": it may have gone
    # out once. Sends beyond that are duplicates.
    duplicated = max(0, unrecorded_sends - unknown)
    pending = await pending_work(redis, orgs) + await open_sends(pool)
    letters = await dead_letters.list_letters(redis)
    lost = len(missing_rows) + len(silent)
    run.note(
        f"messages accepted {len(accepted)} from {len({c.app for c in chats})} organizations; "
        f"replies sent {len(run.gupshup.sent)}; status callbacks {run.statuses_posted}; "
        f"in doubt and confirmed by a status {confirmed}, resent {resent}, "
        f"given up in doubt {unknown}; workers killed {run.kills}, started again "
        f"{run.restarts - run.args.workers}; webhook retries {run.webhook_retries}"
    )
    for pid in missing_rows[:10]:
        run.note(f"LOST: message {pid} was answered 200 but never stored")
    for chat in silent[:10]:
        run.note(f"LOST: chat {chat.app}/{chat.phone} got no reply after its last message")
    for letter in letters:
        run.note(
            f"dead letter {letter.ref} stage={letter.stage} deliveries={letter.deliveries}: "
            f"{letter.error[:300]}"
        )
    print(
        f"lost {lost}, duplicated {duplicated}, pending {pending}, dead letters {len(letters)}",
        flush=True,
    )
    return 0 if lost == duplicated == pending == 0 else 1


# ---- the run --------------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="skytide-soak-"))
    redis_server: EmbeddedRedis | EmbeddedRedisCluster = (
        EmbeddedRedisCluster(root / "redis")
        if args.cluster
        else EmbeddedRedis(root / "redis", appendonly=True)
    )
    postgres = EmbeddedPostgres(root / "pg")
    redis_url, database_url = redis_server.start(), postgres.start()
    try:
        code = await _soak(args, root, redis_server, postgres, redis_url, database_url)
    finally:
        redis_server.stop()
        postgres.stop()
    if code == 0 and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"process logs and data kept in {root}")
    return code


async def _soak(
    args: argparse.Namespace,
    root: Path,
    redis_server: EmbeddedRedis | EmbeddedRedisCluster,
    postgres: EmbeddedPostgres,
    redis_url: str,
    database_url: str,
) -> int:
    pool = await create_pool(database_url, min_size=0)
    await migrate(pool)
    redis = create_redis(redis_url, cluster=args.cluster)
    apps = [f"soak-{i:02d}" for i in range(args.orgs)]
    orgs = [
        await add_org(
            pool,
            name=f"Soak {app}",
            app_name=app,
            api_key="soak-key",
            source_phone="919999999999",
            webhook_token=TOKEN,
        )
        for app in apps
    ]
    await redis.sadd(keys.ORG_REGISTRY, *orgs)
    chats = [
        Chat(app, f"57300{i:02d}{j:05d}")
        for i, app in enumerate(apps)
        for j in range(args.chats_per_org)
    ]
    port = free_port()
    stop_faults, stop_callbacks = asyncio.Event(), asyncio.Event()
    code = 1
    async with FakeGupshup() as gupshup, aiohttp.ClientSession() as http:
        env = {
            **os.environ,
            "SKYTIDE_ENV": "development",
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "GUPSHUP_API_URL": gupshup.url,
            "MEDIA_DIR": str(root / "media"),
            "MEDIA_ALLOWED_HOSTS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "DEBOUNCE_SECONDS": "0.5",
            "DEBOUNCE_MAX_WAIT_SECONDS": "3",
            # A killed worker's entries are taken back after 5 s; a live worker renews
            # its own entries' idle time every 0.5 s, well within that, even under load.
            "CLAIM_IDLE_MS": "5000",
            "CLAIM_EVERY_S": "0.5",
            "ORG_REFRESH_S": "0.5",
            "DRAIN_TIMEOUT_S": "2",
            "TURN_LEASE_S": "20",
            "RECIPIENT_INTERVAL_MS": "0",
            "BLOCK_MS": "500",
            "HTTP_PORT": str(port),
            "REDIS_CLUSTER": "true" if args.cluster else "false",
        }
        run = Run(
            args,
            root,
            redis_server,
            postgres,
            gupshup,
            f"http://127.0.0.1:{port}",
            env,
            workers=[None] * args.workers,
            orgs=orgs,
        )
        ingress = start_process(run, "ingress")
        tasks = []
        try:
            await _wait_ready(run.ingress_url)
            run.note(
                f"{args.workers} workers, {args.orgs} organizations, {len(chats)} chats; "
                f"feeding {args.messages} messages over {args.feed_s:.0f}s; a worker is "
                f"SIGKILLed every {args.kill_every_s:.0f}s"
            )
            tasks = [
                asyncio.create_task(supervise(run, stop_faults)),
                asyncio.create_task(kill_workers(run, stop_faults)),
                asyncio.create_task(faults(run, stop_faults)),
                asyncio.create_task(status_callbacks(run, http, stop_callbacks)),
            ]
            fed = await customers(run, chats, http)
            await _sleep(stop_faults, args.kill_after_feed_s)
            stop_faults.set()  # a process manager keeps the workers up from now on
            await asyncio.gather(*tasks[:3])
            run.note(f"fed {fed} messages; faults over; waiting for the pipeline to drain")
            settle = time.monotonic() + args.settle_s
            while time.monotonic() < settle and (
                unanswered(run, chats) or await pending_work(redis, orgs) or await open_sends(pool)
            ):
                await asyncio.sleep(2)
            run.note(
                "drained"
                if time.monotonic() < settle
                else f"not drained after {args.settle_s:.0f}s"
            )
            await asyncio.sleep(2)  # a late duplicate would arrive now
            stop_callbacks.set()
            await asyncio.wait_for(tasks[3], 120)
            await asyncio.sleep(3)  # the last status callbacks are handled
            code = await measure(run, chats, orgs, pool, redis)
        finally:
            stop_faults.set()
            stop_callbacks.set()
            for task in tasks:
                task.cancel()
            for process in [ingress, *run.workers]:
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in [ingress, *run.workers]:
                if process is not None:
                    try:
                        process.wait(30)
                    except subprocess.TimeoutExpired:
                        process.kill()
            await redis.aclose()
            await pool.close()
    return code


async def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError("the ingress process did not start within 60 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak", description=__doc__.splitlines()[0]
    )
    env = os.environ.get
    parser.add_argument("--messages", type=int, default=int(env("SOAK_MESSAGES", 2000)))
    parser.add_argument("--orgs", type=int, default=int(env("SOAK_ORGS", 20)))
    parser.add_argument("--chats-per-org", type=int, default=int(env("SOAK_CHATS_PER_ORG", 5)))
    parser.add_argument("--workers", type=int, default=int(env("SOAK_WORKERS", 3)))
    parser.add_argument("--feed-s", type=float, default=float(env("SOAK_FEED_S", 120)))
    parser.add_argument("--kill-every-s", type=float, default=float(env("SOAK_KILL_EVERY_S", 8)))
    parser.add_argument(
        "--kill-after-feed-s",
        type=float,
        default=20.0,
        help="workers are still killed this long after the last message",
    )
    parser.add_argument("--postgres-at-s", type=float, default=30.0)
    parser.add_argument("--postgres-down-s", type=float, default=15.0)
    parser.add_argument("--redis-after-s", type=float, default=20.0)
    parser.add_argument("--media-share", type=float, default=0.05)
    parser.add_argument("--settle-s", type=float, default=float(env("SOAK_SETTLE_S", 600)))
    parser.add_argument("--keep", action="store_true", help="keep the data and logs folder")
    parser.add_argument(
        "--cluster",
        action="store_true",
        default=env("SOAK_CLUSTER", "") not in ("", "0"),
        help="on a local Redis Cluster (three primaries, three replicas): a planned failover "
        "and a primary killed instead of the Redis restart",
    )
    args = parser.parse_args(argv)
    random.seed(int(env("SOAK_SEED", 7)))
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
