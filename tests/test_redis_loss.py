"""Redis loses its last writes in the middle of a booking: it restarts from a snapshot taken
after the customer's "la primera" arrived and before its turn ran. The turn is formed again from
the same message, so it is the same turn (storage/turns.py derives its id from its contents):
its booking and its reply keep their idempotency keys, and the customer gets one of each."""

from __future__ import annotations

from storage import keys
from storage.keys import Stream
from tests import clock
from tests.conftest import eventually
from tests.helpers import in_thread, post_webhook, settled, text_webhook

PHONE = "573001239999"


async def test_a_booking_survives_redis_restarting_from_an_older_snapshot(
    system, make_org, gupshup, deps, embedded
):
    org = await make_org("clinic", catalog=True)
    server = embedded["redis"]
    snapshot = server.data_dir / "dump.rdb"
    try:
        # A debounce long enough that the snapshot lands between the message's arrival and its turn.
        async with system(debounce_seconds=1.0) as s:
            await post_webhook(
                s.url,
                text_webhook(
                    "clinic",
                    PHONE,
                    "quiero una cita de limpieza facial mañana en la tarde",
                    "loss-1",
                    clock.now_ms(),
                ),
            )
            [offer] = await gupshup.wait_for_sent(1, timeout_s=20)
            assert "1." in offer.message["text"], offer.message
            await eventually(lambda: settled(deps.redis, org))
            await post_webhook(
                s.url, text_webhook("clinic", PHONE, "la primera", "loss-2", clock.now_ms())
            )
            await eventually(lambda: deps.redis.zcard(keys.pending(org, PHONE)), interval_s=0.01)
            await deps.redis.save()  # the state Redis will come back with
            sent = await gupshup.wait_for_sent(2, timeout_s=20)
            await eventually(lambda: deps.pool.fetchval("select count(*) from appointments"))
            await eventually(lambda: settled(deps.redis, org))
            assert await deps.redis.xlen(keys.stream(org, Stream.TURNS)) == 2

            await in_thread(server.stop)
            await in_thread(server.start)  # loads dump.rdb: the turn is not started yet there
            assert await deps.redis.zcard(keys.pending(org, PHONE)) == 1
            await eventually(lambda: deps.redis.xlen(keys.stream(org, Stream.TURNS)), timeout_s=20)
            await eventually(lambda: settled(deps.redis, org), timeout_s=30)
        assert len(gupshup.sent) == 2, [m.message for m in gupshup.sent]
        assert "Listo" in sent[1].message["text"], sent[1].message
        rows = await deps.pool.fetch("select staff_id, starts_at, status from appointments")
        assert len(rows) == 1 and rows[0]["status"] == "confirmed", rows
    finally:
        snapshot.unlink(missing_ok=True)  # later restarts in the session start empty
