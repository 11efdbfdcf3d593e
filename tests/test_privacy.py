"""A patient's data: `skytide contact export|erase` after a real chat through the pipeline (a
booking with the offline model, a photo understood by the fake Gemini, status callbacks from the
fake Gupshup, a dead letter), then a search of every PostgreSQL text column, every Redis key and
value, and the media folder; and retention enforced by the scheduler on the fixed clock."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from ops.app.parser import build_parser
from ops.app.commands_contact import cmd_contact
from storage import chats, erasure, keys, org_settings, privacy
from storage.events import InboundMessage, encode
from storage.media_store import LocalMediaStore
from storage.keys import Stage, Stream
from tests import clock
from tests.conftest import PIPELINE_ROLES, eventually
from tests.fakes.gemini import FakeGemini
from tests.helpers import fixture, post_webhook, settled, text_webhook
from tests.test_understanding import sample_bytes

PHONE = "573158765432"
NAME = "Valentina Quintero"
OTHER = "573001112233"
OTHER_NAME = "Rodrigo Alvarez"
NEEDLES = (PHONE, "Valentina", "Quintero")


@pytest.fixture
async def gemini():
    async with FakeGemini() as fake:
        yield fake


class Chat:
    def __init__(self, url: str, gupshup, phone: str, name: str) -> None:
        self.url, self.gupshup, self.phone, self.name = url, gupshup, phone, name

    async def say(self, text: str) -> str:
        before = len(self.gupshup.sent)
        await post_webhook(
            self.url,
            text_webhook(
                self.gupshup.app_name,
                self.phone,
                text,
                f"c-{time.time_ns()}",
                clock.now_ms(),
                name=self.name,
            ),
        )
        return await self._reply(before)

    async def photo(self, caption: str) -> str:
        before = len(self.gupshup.sent)
        body = fixture(
            "gupshup/gupshup_v2_image.json", app=self.gupshup.app_name, timestamp=clock.now_ms()
        )
        body["payload"].update(id=f"img-{time.time_ns()}", source=self.phone)
        body["payload"]["sender"].update(phone=self.phone, name=self.name)
        body["payload"]["payload"].update(
            caption=caption,
            url=self.gupshup.add_media(sample_bytes("image/jpeg"), "image/jpeg"),
            urlExpiry=clock.now_ms() + 86_400_000,
        )
        await post_webhook(self.url, body)
        return await self._reply(before)

    async def _reply(self, before: int) -> str:
        sent = await self.gupshup.wait_for_sent(before + 1, timeout_s=20)
        return " ".join(
            m.message.get("text", "") for m in sent[before:] if m.destination == self.phone
        )


@pytest.fixture
def clinic(system, make_org, gupshup, gemini, deps, tmp_path):
    """Factory: the demo clinic with Valentina's booking and photo and Rodrigo's greeting, the
    pipeline still running (status callbacks on, Gemini answering, media in tmp_path/media)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start():
        org = await make_org(gupshup.app_name, catalog=True)
        gupshup.callback_token = "secret-token"
        async with system(
            roles=PIPELINE_ROLES,
            debounce_seconds=0.1,
            gemini_api_key="test-key",
            google_gemini_base_url=gemini.url,
            media_dir=tmp_path / "media",
            media_retry_base_s=0.01,
        ) as s:
            gupshup.callback_url = s.url + "/webhooks/gupshup"
            other = Chat(s.url, gupshup, OTHER, OTHER_NAME)
            await other.say("hola, ¿qué horario tienen?")
            chat = Chat(s.url, gupshup, PHONE, NAME)
            offer = await chat.say("hola, quiero una cita de limpieza facial mañana en la tarde")
            assert "1." in offer, offer
            assert "agendada" in await chat.say("la primera")
            await chat.photo("así tengo la piel, ¿me sirve la limpieza?")
            await gupshup.drain_callbacks(timeout_s=10)
            await eventually(lambda: settled(deps.redis, org), timeout_s=20)
            # A dead letter that names her (an entry given up on), and one of Rodrigo's.
            for phone, pid in ((PHONE, "dl-1"), (OTHER, "dl-2")):
                event = InboundMessage(
                    org=org,
                    provider_id=pid,
                    phone=phone,
                    kind="text",
                    text="x",
                    sent_at_ms=clock.now_ms(),
                    received_at_ms=clock.now_ms(),
                )
                await deps.redis.xadd(
                    keys.dead_letters(org),
                    {
                        "stage": "enrich",
                        "stream": keys.stream(org, Stream.INBOUND),
                        "error": "refused",
                        **{f"payload.{k}": v for k, v in encode(event).items()},
                    },
                )
            yield s, org

    return start


async def contact(settings, capsys, *argv: str) -> tuple[int, str]:
    code = await cmd_contact(settings, build_parser().parse_args(["contact", *argv]))
    return code, capsys.readouterr().out


async def test_export_holds_the_messages_the_appointment_and_the_redis_state(
    clinic, settings, capsys, tmp_path
):
    async with clinic() as (s, org):
        code, out = await contact(settings, capsys, "export", "--org", org, "--phone", f"+{PHONE}")
    assert code == 0
    doc = json.loads(out)
    pg = doc["postgres"]
    assert doc["found"] and [c["phone"] for c in pg["contacts"]] == [PHONE]
    assert pg["contacts"][0]["name"] == NAME
    texts = [m["processed_text"] or m["message"] or "" for m in pg["chat_messages"]]
    assert any("limpieza facial mañana" in t for t in texts)
    assert any("agendada" in t for t in texts)  # the bot's replies too
    assert any(t.startswith("[imagen]") for t in texts)
    [appointment] = pg["appointments"]
    assert appointment["service_name"] == "Limpieza facial" and appointment["status"] == "confirmed"
    assert [a["status"] for a in pg["contact_authorizations"]] == ["opted_in"]
    [media] = doc["media"]
    assert media["path"].startswith(f"{org}/{PHONE}/") and media["mime_type"] == "image/jpeg"
    redis = doc["redis"]
    assert keys.recent(org, PHONE) in redis["keys"]
    assert any(k.startswith(f"checkpoint:{org}:{PHONE}:") for k in redis["keys"])
    assert any(k.startswith(keys.seen(org, "msg", "")) for k in redis["keys"])
    assert any(k.startswith(keys.seen(org, "status", "")) for k in redis["keys"])
    assert redis["scheduled_jobs"] and all(
        j["data"]["appointment_id"] == appointment["id"] for j in redis["scheduled_jobs"]
    )
    assert set(redis["stream_entries"]) == {keys.stream(org, st) for st in keys.PIPELINE_STREAMS}
    assert [d["fields"]["payload.data"] for d in redis["dead_letters"]][0].count(PHONE) == 1
    # Nothing of Rodrigo's.
    assert OTHER not in out and OTHER_NAME not in out


async def test_erase_leaves_nothing_of_the_phone_anywhere(clinic, settings, deps, capsys, tmp_path):
    media_dir = tmp_path / "media"
    async with clinic() as (s, org):
        test_settings = settings.model_copy(update={"media_dir": media_dir})
        _, out = await contact(test_settings, capsys, "export", "--org", org, "--phone", PHONE)
        before = json.loads(out)
        [stored] = [media_dir / m["path"] for m in before["media"]]
        assert stored.exists()
        # The searches below do find her before the erasure.
        assert {t for t, _, _ in await postgres_mentions(deps, NEEDLES)} >= {
            "contacts",
            "chat_identities",
            "chat_messages",
        }
        assert {n for _, n in await redis_mentions(deps.redis, NEEDLES)} == set(NEEDLES)
        assert media_mentions(media_dir, NEEDLES)
        code, out = await contact(test_settings, capsys, "erase", "--org", org, "--phone", PHONE)
        assert code == 2 and stored.exists()  # without --yes: only what it would erase
        # Erased while the system runs.
        code, out = await contact(
            test_settings, capsys, "erase", "--org", org, "--phone", PHONE, "--yes"
        )
        assert code == 0
        report = json.loads(out)
        assert report["media_files"] == 1 and report["postgres"]["contacts"] == 1
        assert report["postgres"]["appointments_anonymised"] == 1
        await eventually(lambda: settled(deps.redis, org))
    # Idempotent: a second erasure finds nothing and fails on nothing.
    code, out = await contact(
        test_settings, capsys, "erase", "--org", org, "--phone", PHONE, "--yes"
    )
    assert code == 0 and json.loads(out)["found"] is False

    assert await postgres_mentions(deps, NEEDLES) == []
    assert await redis_mentions(deps.redis, NEEDLES) == []
    assert media_mentions(media_dir, NEEDLES) == []
    assert not any([await deps.redis.exists(k) for k in before["redis"]["keys"]])
    # The appointment stays for the clinic's books: no contact, no notes; tomorrow's is cancelled.
    [remains] = await deps.pool.fetch(
        "select contact_id, notes, idempotency_key, status from appointments"
        " where organization_id = $1::uuid",
        org,
    )
    assert dict(remains) == {
        "contact_id": None,
        "notes": None,
        "idempotency_key": None,
        "status": "cancelled",
    }
    # Rodrigo is untouched, in PostgreSQL, in Redis and among the dead letters.
    assert await chats.find_identity(deps.pool, org, OTHER) is not None
    assert (
        await deps.pool.fetchval(
            "select count(*) from chat_messages m join chat_identities i"
            " on i.id = m.chat_identity_id where i.phone = $1",
            OTHER,
        )
        >= 2
    )
    assert await deps.redis.exists(keys.recent(org, OTHER))
    assert [
        f["payload.data"].count(OTHER) for _, f in await deps.redis.xrange(keys.dead_letters(org))
    ] == [1]


async def postgres_mentions(deps, needles) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every text-like column of every table that contains a needle."""
    columns = await deps.pool.fetch(
        "select table_name, column_name from information_schema.columns c"
        " join information_schema.tables t using (table_schema, table_name)"
        " where c.table_schema = 'public' and t.table_type = 'BASE TABLE'"
        " and c.data_type in ('text', 'jsonb', 'json', 'character varying', 'ARRAY')"
    )
    assert len(columns) > 30  # the whole schema, not an empty search
    found = []
    for col in columns:
        for needle in needles:
            n = await deps.pool.fetchval(
                f'select count(*) from "{col["table_name"]}" where "{col["column_name"]}"::text ilike $1',
                f"%{needle}%",
            )
            if n:
                found.append((col["table_name"], col["column_name"], needle))
    return found


async def redis_mentions(redis, needles) -> list[tuple[str, str]]:
    """(key, needle) for every key whose name or value contains a needle, whatever its type."""
    found, scanned = [], 0
    async for key in redis.scan_iter(count=1000):
        scanned += 1
        kind = await redis.type(key)
        if kind == "none":  # expired since the scan named it (a pacing key lives a second)
            continue
        if kind == "string":
            value = await redis.get(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "set":
            value = await redis.smembers(key)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = await redis.xrange(key)
        elif kind == "ReJSON-RL":
            value = await redis.execute_command("JSON.GET", key, "$")
        else:
            raise AssertionError(f"{key}: a Redis type this search does not read: {kind}")
        text = key + json.dumps(value, ensure_ascii=False, default=str)
        found += [(key, n) for n in needles if n.lower() in text.lower()]
    assert scanned > 10  # the system's keys (streams, Rodrigo's chat) are there: only hers went
    return found


def media_mentions(root: Path, needles) -> list[tuple[str, str]]:
    found = []
    for path in root.rglob("*"):
        name = str(path.relative_to(root))
        data = path.read_bytes().decode("latin-1") if path.is_file() else ""
        found += [(name, n) for n in needles if n in name or n in data]
    return found


async def test_retention_deletes_old_messages_media_and_dead_letters(
    system, make_org, deps, tmp_path
):
    with pytest.raises(org_settings.BadSetting, match="retention_messages_days"):
        org_settings.parse({"retention_messages_days": "0"})
    org = await make_org(
        settings={
            "retention_messages_days": 30,
            "retention_media_days": 7,
            "retention_dead_letters_days": 2,
        }
    )
    keeper = await make_org()  # no retention: keeps everything
    now = clock.now_dt()

    async def message(
        o: str, phone: str, age: timedelta, media: bool = False
    ) -> tuple[str, Path | None]:
        identity = await chats.upsert_identity(deps.pool, o, phone, "Ana")
        path = f"{o}/{phone}/m{time.time_ns()}.jpg" if media else None
        if path:
            (tmp_path / "media" / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "media" / path).write_bytes(b"jpeg")
        mid, _ = await chats.insert_inbound(
            deps.pool,
            org=o,
            identity=identity,
            provider_id=f"p{time.time_ns()}",
            message="hola",
            processed_text="hola",
            sent_at_ms=int((now - age).timestamp() * 1000),
            media_type="image" if media else None,
            media_url=path,
        )
        return mid, (tmp_path / "media" / path) if path else None

    old, old_file = await message(org, PHONE, timedelta(days=40), media=True)
    mid, mid_file = await message(org, PHONE, timedelta(days=10), media=True)
    new, new_file = await message(org, PHONE, timedelta(days=1), media=True)
    kept, _ = await message(keeper, PHONE, timedelta(days=400))
    seconds, _ = await deps.redis.time()
    await deps.redis.xadd(
        keys.dead_letters(org),
        {"stage": "enrich", "error": "old"},
        id=f"{(seconds - 3 * 86400) * 1000}-0",
    )
    await deps.redis.xadd(keys.dead_letters(org), {"stage": "enrich", "error": "new"})

    async with system(roles=("scheduler",), media_dir=tmp_path / "media"):

        async def swept():  # a run deletes messages, then media, then dead letters
            rows = {
                r["id"]: r["media_url"]
                for r in await deps.pool.fetch("select id::text, media_url from chat_messages")
            }
            done = old not in rows and rows.get(mid, "") is None
            return rows if done and await deps.redis.xlen(keys.dead_letters(org)) == 1 else None

        rows = await eventually(swept)
    assert set(rows) == {mid, new, kept}
    assert rows[mid] is None and rows[new] is not None  # the file of a 10-day-old message went
    assert not old_file.exists() and not mid_file.exists() and new_file.exists()
    assert [f["error"] for _, f in await deps.redis.xrange(keys.dead_letters(org))] == ["new"]


async def test_erase_of_an_unknown_phone_is_harmless_and_a_bad_phone_is_refused(
    deps, make_org, tmp_path
):
    org = await make_org()
    store = LocalMediaStore(tmp_path)
    person = await privacy.find(deps.pool, org, PHONE)
    result = await erasure.erase(deps.pool, deps.redis, store, person, now=clock.now_dt())
    assert result.found is False and result.media_files == 0
    with pytest.raises(ValueError, match="international form"):
        privacy.normalize_phone("call me")
    assert privacy.normalize_phone("+57 315 876-5432") == PHONE


async def test_both_media_stores_delete_objects_and_local_folders_go_when_empty(tmp_path):
    import aiohttp

    from storage.media_store import SupabaseMediaStore
    from tests.fakes.supabase_storage import FakeSupabaseStorage
    from tests.test_media import chunks_of

    local = LocalMediaStore(tmp_path / "media")
    for name in ("o/573158765432/a.jpg", "o/573158765432/b.ogg", "o/573001112233/c.jpg"):
        await local.save(name, chunks_of(b"data"), "image/jpeg", 100)
    assert await local.paths_under("o/573158765432") == [
        "o/573158765432/a.jpg",
        "o/573158765432/b.ogg",
    ]
    assert (
        await local.delete(
            ["o/573158765432/a.jpg", "o/573158765432/b.ogg", "o/gone.jpg", "../outside.jpg"]
        )
        == 2
    )
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "media",
        "media/o",
        "media/o/573001112233",
        "media/o/573001112233/c.jpg",
    ]

    async with FakeSupabaseStorage(api_key="k") as storage, aiohttp.ClientSession() as http:
        remote = SupabaseMediaStore(http, storage.url, "k", spool_dir=tmp_path / "spool")
        for name in ("o/c/a.jpg", "o/c/b.jpg"):
            await remote.release(await remote.save(name, chunks_of(b"data"), "image/jpeg", 100))
        assert await remote.delete(["o/c/a.jpg", "o/c/missing.jpg"]) == 1
        assert list(storage.objects) == ["chat-media/o/c/b.jpg"]


async def test_other_chats_quoting_the_phone_keep_their_message_without_it(
    deps, make_org, tmp_path
):
    """An advisor was told about this customer: the notification stays, her phone and name go."""
    org = await make_org()
    her = await chats.upsert_identity(deps.pool, org, PHONE, NAME)
    await chats.insert_inbound(
        deps.pool,
        org=org,
        identity=her,
        provider_id="p-her",
        message="hola",
        processed_text="hola",
        sent_at_ms=clock.now_ms(),
    )
    advisor = await chats.upsert_identity(deps.pool, org, OTHER, "Asesora")
    note = f"Cliente {NAME} (+{PHONE}) pide hablar con una persona"
    await chats.insert_inbound(
        deps.pool,
        org=org,
        identity=advisor,
        provider_id="p-adv",
        message=note,
        processed_text=note,
        sent_at_ms=clock.now_ms(),
        artifacts={"customer": PHONE, "who": NAME},
    )
    # The same person at another clinic: that clinic's data, untouched by this one's erasure.
    elsewhere = await make_org()
    await chats.upsert_identity(deps.pool, elsewhere, PHONE, NAME)
    theirs = [
        keys.recent(elsewhere, PHONE),
        f"checkpoint:{keys.checkpoint_thread(elsewhere, PHONE)}:",
        keys.simulator_outbox("another-app", PHONE),
    ]
    for key in theirs + [
        keys.recent(org, PHONE),
        f"checkpoint:{keys.checkpoint_thread(org, PHONE)}:",
    ]:
        await deps.redis.set(key, "x")
    # On the inbound stream: another customer's message quoting her phone, handled; another not
    # read yet (deleting it would lose his message); one of hers not read yet.
    inbound = keys.stream(org, Stream.INBOUND)

    def entry(phone: str, text: str) -> dict[str, str]:
        return encode(
            InboundMessage(
                org=org,
                provider_id=f"p{time.time_ns()}",
                phone=phone,
                kind="text",
                text=text,
                sent_at_ms=clock.now_ms(),
                received_at_ms=clock.now_ms(),
            )
        )

    await deps.redis.xgroup_create(inbound, Stage.ENRICH, id="0", mkstream=True)
    handled = await deps.redis.xadd(inbound, entry(OTHER, f"mi esposa es {PHONE}"))
    [(_, [(read_id, _)])] = await deps.redis.xreadgroup(Stage.ENRICH, "c1", {inbound: ">"}, count=1)
    await deps.redis.xack(inbound, Stage.ENRICH, read_id)
    waiting = await deps.redis.xadd(inbound, entry(OTHER, f"¿le escriben a {PHONE}?"))
    hers = await deps.redis.xadd(inbound, entry(PHONE, "hola"))
    person = await privacy.find(deps.pool, org, PHONE)
    result = await erasure.erase(
        deps.pool, deps.redis, LocalMediaStore(tmp_path), person, now=clock.now_dt()
    )
    assert result.postgres["messages_redacted"] == 1 and result.postgres["chat_messages"] == 1
    assert result.redis["keys"] == 2 and await deps.redis.exists(*theirs) == len(theirs)
    assert read_id == handled
    assert [i for i, _ in await deps.redis.xrange(inbound)] == [waiting] and hers != waiting
    assert result.redis["stream_entries"] == 2 and result.redis["kept_entries_of_others"] == 1
    assert await chats.find_identity(deps.pool, elsewhere, PHONE) is not None
    row = await deps.pool.fetchrow(
        "select message, processed_text, artifacts from chat_messages"
        " where organization_id = $1::uuid",
        org,
    )
    assert (
        row["message"]
        == row["processed_text"]
        == "Cliente [borrado] (+[borrado]) pide hablar con una persona"
    )
    assert row["artifacts"] == {"customer": "[borrado]", "who": "[borrado]"}
