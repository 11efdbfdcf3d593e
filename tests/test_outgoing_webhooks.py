"""Outgoing webhooks for the CRM: a receiver (an aiohttp server in the test) gets each event once
per id, signed; survives being down for a while; a delivery given up on is a dead letter that
a replay delivers; a booking through the real pipeline is told once even when its turn runs
twice; taking a chat over and handing it back through the operator API are told once each."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import pytest
from aiohttp import web

from consumers import send_outcomes
from ops import metrics
from ops.embedded import free_port
from ops.settings import ALL_ROLES
from storage import chats, dead_letters, keys, operators, webhooks
from storage.events import EscalationNotice, OutboundMessage
from storage.keys import Stream
from tests import clock
from tests.conftest import eventually
from tests.helpers import in_thread, post_webhook, settled, text_webhook
from tests.test_ops import cli

PHONE = "573001112233"
# Small retry budgets: the runtime's backoff, parametrized small (production: seconds to minutes).
FAST = dict(webhook_retry_base_s=0.1, webhook_retry_max_s=0.5, webhook_retry_attempts=40)


class Receiver:
    """A CRM's endpoint: checks every delivery's signature and timestamp, answers `status`."""

    def __init__(self) -> None:
        self.secret = ""
        self.failing_until = 0.0  # time.monotonic(): answer 500 until then
        self.attempts: list[str] = []  # event ids of every request, answered or not
        self.taken: list[dict] = []  # bodies answered 2xx
        self.bad_signatures = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = webhooks.verify(
            self.secret,
            request.headers.get(webhooks.TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(webhooks.SIGNATURE_HEADER, ""),
            time.time(),
        )
        if not ok:
            self.bad_signatures += 1
            return web.Response(status=401)
        event = await request.json()
        assert request.headers[webhooks.EVENT_ID_HEADER] == event["id"]
        self.attempts.append(event["id"])
        if time.monotonic() < self.failing_until:
            return web.Response(status=500)
        self.taken.append(event)
        return web.Response(status=204)

    def of_type(self, event_type: str) -> list[dict]:
        return [e for e in self.taken if e["type"] == event_type]


@asynccontextmanager
async def receiving(deps, org: str):
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    endpoint = await webhooks.add_endpoint(deps.pool, org, f"http://127.0.0.1:{port}/hooks")
    receiver.secret, receiver.url = endpoint.secret, endpoint.url
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def customer(deps, org: str, phone: str = PHONE) -> chats.Identity:
    return await chats.upsert_identity(deps.pool, org, phone, "Laura")


async def book_directly(deps, org: str, identity: chats.Identity) -> str:
    """An appointment row (what a booking tool would have written)."""
    return await deps.pool.fetchval(
        "insert into appointments (organization_id, contact_id, service_id, staff_id, starts_at,"
        " ends_at) select $1::uuid, $2::uuid, sv.id, st.id, $3::timestamptz, $3::timestamptz + interval '1 hour' "
        "from services sv, staff st where sv.organization_id = $1::uuid "
        "and st.organization_id = $1::uuid limit 1 returning id::text",
        org,
        identity.contact_id,
        datetime.fromtimestamp(clock.now_ms() / 1000 + 86400, timezone.utc),
    )


async def emit_all_seven(deps, org: str) -> None:
    """Every event type, each emitted twice (a replayed turn, a retried request)."""
    identity = await customer(deps, org)
    booked = await book_directly(deps, org, identity)
    for _ in range(2):
        for change in ("booked", "rescheduled", "confirmed", "cancelled"):
            await webhooks.appointment_changed(
                deps.redis, deps.pool, org, booked, change, turn_id="turn-1", now_ms=clock.now_ms()
            )
        await webhooks.chat_event(
            deps.redis,
            deps.pool,
            org,
            "chat.escalated",
            phone=PHONE,
            version="turn-2:escalation",
            by="bot",
            reason="quiere una persona",
            now_ms=clock.now_ms(),
        )
        for enabled in (False, True):
            await webhooks.chat_event(
                deps.redis,
                deps.pool,
                org,
                "chat.handed_back" if enabled else "chat.taken_over",
                phone=PHONE,
                version="1700000000000",
                by="Ana",
                now_ms=clock.now_ms(),
            )


async def test_each_event_reaches_the_receiver_once_signed_with_its_payload(system, make_org, deps):
    org = await make_org(catalog=True)
    async with receiving(deps, org) as receiver, system(roles=("scheduler",), **FAST):
        await emit_all_seven(deps, org)
        await eventually(lambda: _received(receiver, 7))
        await eventually(lambda: _acknowledged(deps, org))
    assert receiver.bad_signatures == 0
    assert Counter(e["id"] for e in receiver.taken).most_common(1)[0][1] == 1
    assert sorted(e["type"] for e in receiver.taken) == sorted(webhooks.EVENT_TYPES)
    booked = receiver.of_type("appointment.booked")[0]
    assert booked["org"] == org and booked["created_at"].endswith("Z")
    assert booked["data"]["contact"] == {"phone": PHONE, "name": "Laura"}
    assert {"appointment_id", "service", "staff", "starts_at", "ends_at", "status"} <= set(
        booked["data"]
    )
    assert receiver.of_type("chat.taken_over")[0]["data"] == {"phone": PHONE, "by": "Ana"}
    assert receiver.of_type("chat.escalated")[0]["data"]["reason"] == "quiere una persona"


async def test_a_receiver_answering_500_for_a_while_gets_every_event_once_it_recovers(
    system, make_org, deps
):
    org = await make_org(catalog=True)
    failed_before = _deliveries("failed")
    async with (
        receiving(deps, org) as down,
        receiving(deps, org) as up,
        system(roles=("scheduler",), **FAST),
    ):
        down.failing_until = time.monotonic() + 4  # the CRM answers 500 for 4 s, then recovers
        await emit_all_seven(deps, org)
        await eventually(lambda: _received(down, 7), timeout_s=30)
        await eventually(lambda: _acknowledged(deps, org))
    assert len(down.attempts) > 7  # it was tried while it answered 500
    assert _deliveries("failed") > failed_before
    for receiver in (down, up):  # each event once per endpoint: the one that was up got no repeats
        assert sorted(Counter(e["id"] for e in receiver.taken).values()) == [1] * 7
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def test_a_delivery_given_up_on_is_a_dead_letter_that_a_replay_delivers(
    system, make_org, deps
):
    org = await make_org(catalog=True)
    async with (
        receiving(deps, org) as receiver,
        system(
            roles=("scheduler",),
            webhook_retry_base_s=0.05,
            webhook_retry_max_s=0.1,
            webhook_retry_attempts=2,
        ),
    ):
        receiver.failing_until = float("inf")
        await webhooks.chat_event(
            deps.redis,
            deps.pool,
            org,
            "chat.escalated",
            phone=PHONE,
            version="t:e",
            by="bot",
            now_ms=clock.now_ms(),
        )
        letters = await eventually(lambda: dead_letters.list_letters(deps.redis, org=org))
        assert letters[0].stage == "webhooks" and "HTTP 500" in letters[0].error
        receiver.failing_until = 0.0
        replayed = await dead_letters.replay_letter(deps.redis, letters[0])
        assert replayed.outcome == "put back"
        assert replayed.detail.startswith("webhook (") and "()" not in replayed.detail
        await eventually(lambda: _received(receiver, 1))
        await eventually(lambda: _acknowledged(deps, org))
    assert [e["type"] for e in receiver.taken] == ["chat.escalated"]
    assert await dead_letters.list_letters(deps.redis, org=org) == []


async def test_a_booking_through_the_pipeline_is_told_once_even_when_its_turn_runs_twice(
    system, make_org, gupshup, deps
):
    from graph.receptionist import Receptionist

    org = await make_org("DemoClinic", catalog=True)
    crashed: list[str] = []

    class CrashingAfterTheBooking(Receptionist):
        """The worker dies after the booking, before the replies: the turn is run again."""

        async def run_turn(self, turn):
            result = await super().run_turn(turn)
            if any(a.get("action") == "booked" for a in result.actions) and not crashed:
                crashed.append(turn.turn_id)
                raise RuntimeError("worker lost after the booking")
            return result

    async with (
        receiving(deps, org) as receiver,
        system(CrashingAfterTheBooking, roles=ALL_ROLES, debounce_seconds=0.1, **FAST) as s,
    ):
        for text in ("hola, quiero una cita de limpieza facial mañana en la tarde", "la primera"):
            before = len(gupshup.sent)
            await post_webhook(
                s.url,
                text_webhook(
                    "DemoClinic", PHONE, text, f"c-{time.time_ns()}", clock.now_ms(), name="Laura"
                ),
            )
            await gupshup.wait_for_sent(before + 1, timeout_s=20)
        booked = await eventually(lambda: _received_type(receiver, "appointment.booked"))
        await eventually(lambda: _acknowledged(deps, org))
    assert crashed, "the turn with the booking did not run twice"
    assert len(booked) == 1 and len(receiver.of_type("appointment.booked")) == 1
    rows = await deps.pool.fetch(
        "select id::text from appointments where organization_id = $1::uuid", org
    )
    assert [r["id"] for r in rows] == [booked[0]["data"]["appointment_id"]]
    assert booked[0]["data"]["service"] == "Limpieza facial"
    assert await deps.redis.xlen(keys.stream(org, Stream.WEBHOOKS)) <= 1  # queued once (or trimmed)


async def test_taking_over_and_handing_back_are_told_once_per_real_change(system, make_org, deps):
    from tests.test_operator_api import OperatorClient

    org = await make_org(catalog=True)
    await customer(deps, org)
    _, token = await operators.add(deps.pool, org, "Ana")
    async with (
        receiving(deps, org) as receiver,
        system(roles=("ingress", "scheduler"), **FAST) as s,
    ):
        staff = OperatorClient(s.url, token)
        for _ in range(2):  # a second take-over by the same person changes nothing
            assert (await staff.call("POST", f"/chats/{PHONE}/takeover", {"reason": "VIP"}))[
                0
            ] == 200
        await eventually(lambda: _received_type(receiver, "chat.taken_over"))
        for _ in range(2):
            assert (await staff.call("POST", f"/chats/{PHONE}/handback"))[0] == 200
        await eventually(lambda: _received_type(receiver, "chat.handed_back"))
        # Answering as the clinic takes the chat over again: a new pause, a new event.
        assert (await staff.call("POST", f"/chats/{PHONE}/messages", {"text": "Hola"}))[0] == 202
        await eventually(lambda: _received(receiver, 3))
        await eventually(lambda: _acknowledged(deps, org))
    assert [e["type"] for e in receiver.taken] == [
        "chat.taken_over",
        "chat.handed_back",
        "chat.taken_over",
    ]
    first, back, again = receiver.taken
    assert first["data"] == {"phone": PHONE, "by": "Ana", "reason": "VIP"}
    assert back["data"] == {"phone": PHONE, "by": "Ana"}
    assert len({first["id"], back["id"], again["id"]}) == 3


async def test_an_accepted_escalation_is_told_once_and_nothing_without_an_endpoint(make_org, deps):
    org = await make_org(catalog=True)
    await customer(deps, org)
    notice = OutboundMessage(
        org=org,
        phone="573009998877",
        template_id="tmpl",
        template_params=["Laura", PHONE, "quiere una persona", "resumen"],
        idempotency_key="turn-9:escalation",
        purpose="escalation",
        escalation=EscalationNotice(customer_phone=PHONE, accepted_text="ok", failed_text="no"),
    )
    await send_outcomes.escalation_outcome(deps, notice, accepted=True)
    assert not await deps.redis.exists(keys.stream(org, Stream.WEBHOOKS))  # no CRM: nothing kept
    await webhooks.add_endpoint(deps.pool, org, "https://crm.example/hooks")
    notice = notice.model_copy(update={"idempotency_key": "turn-10:escalation"})
    for _ in range(2):  # the sender's answer and a status event both settle it
        await send_outcomes.escalation_outcome(deps, notice, accepted=True)
    entries = await deps.redis.xrange(keys.stream(org, Stream.WEBHOOKS))
    assert len(entries) == 1 and '"chat.escalated"' in entries[0][1]["data"]


async def test_endpoints_are_added_listed_and_removed_with_the_command(deps, make_org):
    org = await make_org()
    made = await in_thread(
        cli, deps.settings, "webhook", "add", "--org", org, "--url", "https://crm.example/hooks"
    )
    assert made.returncode == 0, made.stderr
    secret = next(
        line.split()[1] for line in made.stdout.splitlines() if line.startswith("secret: ")
    )
    [stored] = await webhooks.list_endpoints(deps.pool, org)
    assert stored.secret == secret and stored.url == "https://crm.example/hooks"
    listed = await in_thread(cli, deps.settings, "webhook", "list", "--org", org)
    assert "https://crm.example/hooks" in listed.stdout and secret not in listed.stdout
    removed = await in_thread(
        cli, deps.settings, "webhook", "remove", "--org", org, "--url", "https://crm.example/hooks"
    )
    assert removed.returncode == 0, removed.stderr
    assert await webhooks.list_endpoints(deps.pool, org) == []
    bad = await in_thread(cli, deps.settings, "webhook", "add", "--org", org, "--url", "ftp://x")
    assert bad.returncode == 2


@pytest.mark.parametrize("tamper", ["body", "timestamp", "old"])
def test_a_tampered_or_old_delivery_does_not_verify(tamper):
    body, now = b'{"id":"x"}', int(time.time())
    header = webhooks.signature("whsec_k", now, body)
    assert webhooks.verify("whsec_k", str(now), body, header, now)
    if tamper == "body":
        assert not webhooks.verify("whsec_k", str(now), body + b" ", header, now)
    elif tamper == "timestamp":
        assert not webhooks.verify("whsec_k", str(now + 1), body, header, now)
    else:
        old = now - webhooks.TOLERANCE_S - 1
        assert not webhooks.verify(
            "whsec_k", str(old), body, webhooks.signature("whsec_k", old, body), now
        )


async def _received(receiver: Receiver, n: int) -> bool:
    return len(receiver.taken) >= n


async def _received_type(receiver: Receiver, event_type: str) -> list[dict]:
    return receiver.of_type(event_type)


async def _acknowledged(deps, org: str) -> bool:
    """Every entry of the webhooks stream read and acknowledged by its group."""
    stream = keys.stream(org, Stream.WEBHOOKS)
    if not await deps.redis.exists(stream):
        return True
    groups = await deps.redis.xinfo_groups(stream)
    return bool(groups) and all(not g["pending"] and not g.get("lag") for g in groups)


def _deliveries(outcome: str) -> float:
    return metrics.webhook_deliveries.labels(outcome)._value.get()


async def test_erasing_a_patient_drops_their_webhook_events_not_delivered_yet(
    make_org, deps, tmp_path
):
    from storage import erasure, privacy
    from storage.media_store import LocalMediaStore

    org = await make_org(catalog=True)
    await webhooks.add_endpoint(deps.pool, org, "https://crm.example/hooks")
    appointment = await book_directly(deps, org, await customer(deps, org))
    await webhooks.appointment_changed(
        deps.redis, deps.pool, org, appointment, "booked", turn_id="t", now_ms=clock.now_ms()
    )
    await webhooks.chat_event(
        deps.redis,
        deps.pool,
        org,
        "chat.taken_over",
        phone="573000000009",
        version="1",
        by="Ana",
        now_ms=clock.now_ms(),
    )
    person = await privacy.find(deps.pool, org, PHONE)
    await erasure.erase(
        deps.pool, deps.redis, LocalMediaStore(tmp_path), person, now=clock.now_dt()
    )
    left = [
        fields["data"] for _, fields in await deps.redis.xrange(keys.stream(org, Stream.WEBHOOKS))
    ]
    assert len(left) == 1 and PHONE not in left[0] and "573000000009" in left[0]  # another's stays


ADVISOR, STAFF = "573009998877", "573004445566"


async def test_staff_phones_get_one_booking_notice_per_change_even_while_the_crm_fails(
    system, make_org, deps, gupshup
):
    org = await make_org(
        catalog=True,
        settings={
            "advisor_phone": ADVISOR,
            "staff_phones": [STAFF],
            "booking_notice_template_id": "tmpl-booking",
        },
    )
    async with receiving(deps, org) as receiver, system(roles=("scheduler", "sender"), **FAST):
        receiver.failing_until = time.monotonic() + 3  # each event is tried several times
        await emit_all_seven(deps, org)
        await eventually(lambda: _received(receiver, 7), timeout_s=30)
        await eventually(lambda: _acknowledged(deps, org))
        await gupshup.wait_for_sent(6, timeout_s=15)
        await eventually(lambda: settled(deps.redis, org))  # nothing more is on its way
    assert len(receiver.attempts) > 7
    notices = [m for m in gupshup.sent if m.kind == "template"]
    assert len(gupshup.sent) == len(notices) == 6  # booked, moved, cancelled × two staff phones
    assert Counter(m.destination for m in notices) == {ADVISOR: 3, STAFF: 3}
    said = sorted(m.template["params"][0] for m in notices if m.destination == STAFF)
    assert said == ["Cita cancelada", "Cita reprogramada", "Nueva cita"]
    params = notices[0].template["params"]
    assert notices[0].template["id"] == "tmpl-booking" and params[4] == f"Laura {PHONE}"
    service = await deps.pool.fetchval(
        "select name from services where organization_id = $1::uuid limit 1", org
    )
    assert params[1] == service
    # The notices are staff messages, not chats with customers: no contact was made for them.
    assert not await deps.pool.fetchval(
        "select count(*) from contacts where organization_id = $1::uuid and phone = any($2)",
        org,
        [ADVISOR, STAFF],
    )
