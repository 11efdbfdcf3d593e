"""A patient's data: who one phone is in one organization, and everything the system keeps
about them (Colombia's Ley 1581 and the GDPR give a person the right to see it and to have it
deleted; clinics hold health data).

`find` reads who the person is in PostgreSQL (contacts, chat identities, the ids of their
messages, turns and appointments); `redis_state` finds what Redis holds about them from those
ids and the phone: the chat's keys (burst, lease, recent messages, pacing, dedupe, origins,
done-markers, the development outbox), its members of shared sets (due chats, held slots,
scheduled jobs), the checkpointer's keys of the thread, and every stream entry and dead letter
that names the phone or one of the person's message or turn ids.
storage/privacy_export.py puts it in one document; storage/erasure.py deletes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from storage import keys
from storage.db import Db
from storage.redis_client import entries, members, text_set
from storage.events import BadEvent, decode

SCAN_COUNT = 1000
STREAM_PAGE = 1000


def normalize_phone(text: str) -> str:
    """The phone as the system stores it: digits only, international form (573001234567)."""
    digits = re.sub(r"[\s+()./-]", "", text or "")
    if not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise ValueError(f"{text!r} is not a phone number in international form (573001234567)")
    return digits


@dataclass
class Person:
    """Who one phone is in one organization, and the ids that point at them elsewhere."""

    org: str
    phone: str
    phones: list[str] = field(default_factory=list)  # the phone and the contact's other chats
    names: list[str] = field(default_factory=list)
    contact_ids: list[str] = field(default_factory=list)
    identity_ids: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    inbound_provider_ids: list[str] = field(default_factory=list)
    outbound_provider_ids: list[str] = field(default_factory=list)  # Gupshup and WhatsApp ids
    turn_ids: list[str] = field(default_factory=list)
    appointment_ids: list[str] = field(default_factory=list)
    media_paths: list[str] = field(default_factory=list)
    apps: list[str] = field(default_factory=list)  # the organization's Gupshup apps

    @property
    def found(self) -> bool:
        return bool(self.contact_ids or self.identity_ids)

    def threads(self) -> list[str]:
        return [keys.checkpoint_thread(self.org, p) for p in self.phones]

    def needles(self) -> set[str]:
        """Strings whose presence in a stream entry makes it the person's."""
        return {
            *self.phones,
            *self.message_ids,
            *self.inbound_provider_ids,
            *self.outbound_provider_ids,
            *self.turn_ids,
        }


async def find(db: Db, org: str, phone: str) -> Person:
    person = Person(org=org, phone=phone, phones=[phone])
    rows = await db.fetch(
        "select c.id::text as contact_id, c.phone as contact_phone, c.name, i.id::text as identity_id,"
        " i.phone as identity_phone, i.profile_name "
        "from contacts c left join chat_identities i on i.contact_id = c.id "
        "where c.organization_id = $1::uuid and (c.phone = $2 or c.id in ("
        "  select contact_id from chat_identities where organization_id = $1::uuid and phone = $2))",
        org,
        phone,
    )
    for r in rows:
        _add(person.contact_ids, r["contact_id"])
        _add(person.identity_ids, r["identity_id"])
        for p in (r["contact_phone"], r["identity_phone"]):
            _add(person.phones, p)
        for n in (r["name"], r["profile_name"]):
            _add(person.names, (n or "").strip())
    # A chat identity whose contact row is gone (or another contact's) still names this phone.
    for r in await db.fetch(
        "select id::text from chat_identities where organization_id = $1::uuid"
        " and phone = any($2::text[])",
        org,
        person.phones,
    ):
        _add(person.identity_ids, r["id"])
    for r in await db.fetch(
        "select id::text, direction, provider_message_id, whatsapp_message_id, turn_id, media_url "
        "from chat_messages where organization_id = $1::uuid and chat_identity_id = any($2::uuid[])",
        org,
        person.identity_ids,
    ):
        person.message_ids.append(r["id"])
        ids = (
            person.inbound_provider_ids
            if r["direction"] == "inbound"
            else person.outbound_provider_ids
        )
        _add(ids, r["provider_message_id"])
        _add(person.outbound_provider_ids, r["whatsapp_message_id"])
        _add(person.turn_ids, r["turn_id"])
        _add(person.media_paths, r["media_url"])
    for r in await db.fetch(
        "select id::text from appointments where organization_id = $1::uuid"
        " and contact_id = any($2::uuid[])",
        org,
        person.contact_ids,
    ):
        person.appointment_ids.append(r["id"])
    person.apps = [
        r["gupshup_app_name"]
        for r in await db.fetch(
            "select gupshup_app_name from platform_connections where organization_id = $1::uuid",
            org,
        )
    ]
    return person


def _add(items: list[str], value: str | None) -> None:
    if value and value not in items:
        items.append(value)


# ---- Redis ------------------------------------------------------------------------------------


@dataclass
class RedisState:
    """What Redis holds about a person: whole keys, members of shared keys, stream entries."""

    keys: list[str] = field(default_factory=list)
    due_members: list[str] = field(default_factory=list)  # in {org}:due
    hold_members: list[str] = field(default_factory=list)  # in {org}:holds
    job_ids: list[str] = field(default_factory=list)  # in {org}:jobs:*
    entries: dict[str, list[str]] = field(default_factory=dict)  # stream -> entry ids
    # Entries about someone else that mention the phone (a message quoting it) and are not
    # handled yet, or are another person's dead letters: deleting them would lose that person's
    # message, so they stay (streams are trimmed; dead letters age out).
    kept_entries: dict[str, list[str]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "keys": len(self.keys),
            "due_members": len(self.due_members),
            "held_slots": len(self.hold_members),
            "scheduled_jobs": len(self.job_ids),
            "stream_entries": sum(len(v) for v in self.entries.values()),
            "kept_entries_of_others": sum(len(v) for v in self.kept_entries.values()),
        }


def _chat_keys(org: str, phone: str) -> list[str]:
    return [
        keys.pending(org, phone),
        keys.batch(org, phone),
        keys.handed(org, phone),
        keys.pending_chars(org, phone),
        keys.enriching(org, phone),
        keys.turn_lease(org, phone),
        keys.recent(org, phone),
        keys.dev_turn_info(org, phone),
        keys.recipient_pace(org, phone),
        keys.reminded(org, phone),
    ]


def _streams(org: str) -> list[str]:
    # The CRM's webhooks too: an event not delivered yet names the person (storage/webhooks.py).
    return [
        *(keys.stream(org, stream) for stream in keys.PIPELINE_STREAMS),
        keys.stream(org, keys.Stream.WEBHOOKS),
        keys.dead_letters(org),
    ]


async def redis_state(redis: aioredis.Redis, person: Person) -> RedisState:
    org = person.org
    state = RedisState()
    # Stream entries first: turn entries name turn ids that nothing in PostgreSQL remembers
    # (a turn with no reply), and their done-markers are named by them.
    needles = person.needles()
    for stream in _streams(org):
        found = await _entries_naming(redis, stream, needles)
        dead = stream == keys.dead_letters(org)
        for entry_id, fields in found:
            if dead:
                fields = {
                    k[len("payload.") :]: v for k, v in fields.items() if k.startswith("payload.")
                }
            if _subject(fields) in (None, *person.phones) or (
                not dead and await _handled(redis, stream, entry_id)
            ):
                state.entries.setdefault(stream, []).append(entry_id)
            else:
                state.kept_entries.setdefault(stream, []).append(entry_id)
            turn_id = _turn_id(fields)
            if turn_id and turn_id not in person.turn_ids:
                person.turn_ids.append(turn_id)

    named: set[str] = set()
    for phone in person.phones:
        named.update(_chat_keys(org, phone))
    named.update(keys.origin(org, m) for m in person.message_ids)
    named.update(keys.seen(org, "msg", p) for p in person.inbound_provider_ids)
    named.update(keys.turn_done(org, t) for t in person.turn_ids)
    named.update(keys.appointment_jobs(org, a) for a in person.appointment_ids)
    status_ids = set(person.outbound_provider_ids)
    threads = person.threads()
    seen_user = tuple(keys.seen(org, "user", f"{p}:") for p in person.phones)
    seen_status = keys.seen(org, "status", "")
    outboxes = {keys.simulator_outbox(app, p) for app in person.apps for p in person.phones}
    tenant = f"{{{org}}}:"
    # One pass over the keyspace: dedupe keys are named by provider ids, checkpoint keys by the
    # thread (they carry no hash tag), the development outbox by app and phone; any other key
    # of this organization naming the phone is the person's too. Another organization's keys
    # about the same phone are that organization's (its own erasure request).
    async for key in redis.scan_iter(count=SCAN_COUNT):
        if key in named:
            continue
        if (
            key in outboxes
            or key.startswith(seen_user)
            or key.startswith(seen_status)
            and key[len(seen_status) :].rsplit(":", 1)[0] in status_ids
            or any(keys.is_checkpoint_key_of(key, t) for t in threads)
            or key.startswith(tenant)
            and any(p in key for p in person.phones)
        ):
            named.add(key)
    if named:
        async with redis.pipeline(transaction=False) as pipe:
            for key in sorted(named):
                pipe.exists(key)
            present = await pipe.execute()
        state.keys = [k for k, n in zip(sorted(named), present) if n]

    state.due_members = [
        p for p in person.phones if await redis.zscore(keys.due(org), p) is not None
    ]
    state.hold_members = [
        m
        for m in members(await redis.zrange(keys.holds(org), 0, -1))
        if m.rsplit("|", 1)[-1] in person.phones
    ]
    for appointment in person.appointment_ids:
        for job_id in text_set(await redis.smembers(keys.appointment_jobs(org, appointment))):
            _add(state.job_ids, job_id)
    return state


def _subject(fields: dict[str, str]) -> str | None:
    """The phone an entry is about (its chat), or None when it names none (a status callback
    without its destination, an entry that does not decode)."""
    try:
        event = decode(fields)
    except BadEvent:
        return None
    return (
        getattr(event, "phone", None)
        or getattr(event, "chat", None)
        or getattr(event, "destination", None)
    )


async def _handled(redis: aioredis.Redis, stream: str, entry_id: str) -> bool:
    """Every group of the stream has read the entry and acknowledged it."""
    groups = await redis.xinfo_groups(stream)
    for group in groups:
        if _id(entry_id) > _id(group["last-delivered-id"]):
            return False
        if await redis.xpending_range(stream, group["name"], min=entry_id, max=entry_id, count=1):
            return False
    return bool(groups)


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _turn_id(fields: dict[str, str]) -> str | None:
    if fields.get("type") != "turn":
        return None
    try:
        turn_id: str | None = json.loads(fields.get("data") or "{}").get("turn_id")
    except ValueError:
        return None
    return turn_id


async def _entries_naming(
    redis: aioredis.Redis, stream: str, needles: set[str]
) -> list[tuple[str, dict[str, str]]]:
    """Entries of a stream with a field that contains one of the needles (read in pages)."""
    found: list[tuple[str, dict[str, str]]] = []
    if not needles:
        return found
    # One pattern for all of them: a long chat has thousands of message ids.
    pattern = re.compile("|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)))
    start = "-"
    while True:
        page = entries(await redis.xrange(stream, min=start, count=STREAM_PAGE))
        for entry_id, fields in page:
            if any(pattern.search(value) for value in fields.values()):
                found.append((entry_id, fields))
        if len(page) < STREAM_PAGE:
            return found
        start = f"({page[-1][0]}"
