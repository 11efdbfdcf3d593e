"""The operator API: the clinic's team reads chats, answers as the clinic, takes a chat over and
hands it back, through the real pipeline (webhook to fake Gupshup) with the offline model; and
staff phones are never customers."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from graph import prompts
from storage import chats, memory, operators
from tests.conftest import eventually
from tests.fakes.gemini import DEFAULT_TRANSCRIPT
from tests.test_delivery import settled
from tests.test_understanding import APP, APP_ID, gemini, media_system, row, webhook  # noqa: F401
from tests.helpers import fixture, in_thread, post_webhook, text_webhook
from tests import clock

PHONE = "573001112233"
ADVISOR = "573009998877"
STAFF = "573004445566"
ESCALATING = {"advisor_phone": ADVISOR, "escalation_template_id": "tmpl-advisor"}


class OperatorClient:
    """A person of the clinic calling the operator API with their bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url + "/operator/v1", token

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            async with session.request(
                method,
                self.url + path,
                json=body,
                headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
            ) as response:
                return response.status, await response.json()

    async def chat(self, phone: str = PHONE) -> dict:
        status, body = await self.call("GET", f"/chats/{phone}")
        assert status == 200, body
        return body


async def say(
    url: str, gupshup, text: str, expect: int = 1, phone: str = PHONE, app: str = "DemoClinic"
) -> list[str]:
    """The customer writes; the texts sent back to them once `expect` more messages went out."""
    before = len(gupshup.sent)
    await post_webhook(
        url, text_webhook(app, phone, text, f"c-{time.time_ns()}", clock.now_ms(), name="Laura")
    )
    if not expect:
        return []
    sent = await gupshup.wait_for_sent(before + expect, timeout_s=15)
    return [
        m.message.get("text", "") for m in sent[before:] if m.destination == phone and m.message
    ]


async def test_operator_tokens_are_made_revoked_and_listed_with_the_command(deps, make_org, system):
    from tests.test_ops import cli

    org = await make_org("DemoClinic")
    made = await in_thread(cli, deps.settings, "operator", "add", "--org", org, "--name", "Ana")
    assert made.returncode == 0, made.stderr
    token = next(line.split()[1] for line in made.stdout.splitlines() if line.startswith("token: "))
    operator_id = made.stdout.split()[1]
    stored = await deps.pool.fetchrow(
        "select * from operator_tokens where id = $1::uuid", operator_id
    )
    assert stored["token_sha256"] == operators.digest(token)
    assert token not in str(dict(stored))  # only the digest is kept
    async with system() as s:
        assert (await OperatorClient(s.url, token).call("GET", "/me"))[1]["name"] == "Ana"
        # The webhook token is Gupshup's, not an operator's; a made-up one opens nothing either.
        for wrong in ("secret-token", "sko_" + "x" * 43, ""):
            assert (await OperatorClient(s.url, wrong).call("GET", "/chats"))[0] == 401
        revoked = await in_thread(
            cli, deps.settings, "operator", "revoke", "--org", org, "--id", operator_id
        )
        assert revoked.returncode == 0, revoked.stderr
        assert (await OperatorClient(s.url, token).call("GET", "/chats"))[0] == 401
    listed = await in_thread(cli, deps.settings, "operator", "list", "--org", org)
    assert "Ana  revoked" in listed.stdout, listed.stdout
    again = await in_thread(
        cli, deps.settings, "operator", "revoke", "--org", org, "--id", operator_id
    )
    assert again.returncode == 1


async def test_a_chat_of_another_organization_is_not_found(deps, make_org, system):
    mine = await make_org("DemoClinic")
    theirs = await make_org("OtherClinic", token="other-clinic-token")
    await chats.upsert_identity(deps.pool, theirs, PHONE, "Laura")
    _, token = await operators.add(deps.pool, mine, "Ana")
    async with system() as s:
        api = OperatorClient(s.url, token)
        assert (await api.call("GET", "/chats"))[1]["chats"] == []
        assert (await api.call("GET", f"/chats/{PHONE}"))[0] == 404
        assert (await api.call("POST", f"/chats/{PHONE}/messages", {"text": "hola"}))[0] == 404
        assert (await api.call("POST", f"/chats/{PHONE}/takeover", {}))[0] == 404
        assert (await api.call("POST", f"/chats/{PHONE}/handback"))[0] == 404
    assert (await chats.find_identity(deps.pool, theirs, PHONE)).bot_enabled  # untouched


async def test_staff_answer_as_the_clinic_and_hand_back_to_a_bot_that_knows_what_they_said(
    deps, make_org, system, gupshup
):
    org = await make_org("DemoClinic", catalog=True, settings=ESCALATING)
    _, token = await operators.add(deps.pool, org, "Ana")
    async with system(debounce_seconds=0.1) as s:
        api = OperatorClient(s.url, token)
        await say(s.url, gupshup, "quiero hablar con una persona", expect=2)  # advisor + customer
        await say(s.url, gupshup, "¿hay alguien?", expect=0)
        listed = await eventually(lambda: _waiting(api))
        assert (
            listed["phone"] == PHONE and listed["needs_person"] and listed["waiting_s"] is not None
        )
        assert listed["paused"]["reason"] == "escalated to an advisor"

        before = len(gupshup.sent)
        status, queued = await api.call(
            "POST",
            f"/chats/{PHONE}/messages",
            {"text": "Hola Laura, soy Ana. Te guardo el jueves a las 3 pm."},
            headers={"Idempotency-Key": "answer-1"},
        )
        assert status == 202, queued
        sent = await gupshup.wait_for_sent(before + 1)
        assert sent[-1].destination == PHONE and "soy Ana" in sent[-1].message["text"]
        # A retried POST with the same key sends nothing more.
        await api.call(
            "POST",
            f"/chats/{PHONE}/messages",
            {"text": "Hola Laura, soy Ana. Te guardo el jueves a las 3 pm."},
            headers={"Idempotency-Key": "answer-1"},
        )
        chat = await eventually(lambda: _with_author(api, "staff:Ana"))
        assert [m["author"] for m in chat["messages"]][:1] == ["customer"]
        assert "system" in [m["author"] for m in chat["messages"]]  # the escalation notice

        status, _ = await api.call("POST", f"/chats/{PHONE}/handback")
        assert status == 200
        replies = await say(s.url, gupshup, "gracias, ¿cuánto cuesta la limpieza facial?")
        assert replies and replies[0], replies
    assert len([m for m in gupshup.sent if "soy Ana" in (m.message or {}).get("text", "")]) == 1
    rows = await deps.pool.fetch(
        "select direction, author from chat_messages m where organization_id = $1::uuid"
        " and chat_identity_id = (select id from chat_identities where phone = $2"
        " and organization_id = $1::uuid) order by created_at",
        org,
        PHONE,
    )
    authors = [r["author"] for r in rows]
    assert authors[-1] == "bot" and authors.index("staff:Ana") < len(authors) - 2
    # What the bot read on its turn after the hand-back: the staff's words, as the clinic's.
    recent = await memory.recent_messages(deps.redis, deps.pool, org, PHONE, 10)
    assert ("staff", "Hola Laura, soy Ana. Te guardo el jueves a las 3 pm.") in recent
    await deps.redis.delete(f"{{{org}}}:recent:{PHONE}")  # rebuilt from PostgreSQL the same way
    assert (
        "staff",
        "Hola Laura, soy Ana. Te guardo el jueves a las 3 pm.",
    ) in await memory.recent_messages(deps.redis, deps.pool, org, PHONE, 10)
    assert "Equipo de la clínica (una persona): Hola Laura, soy Ana" in _rendered(recent)


async def test_take_over_keeps_the_bot_quiet_and_says_who_and_why(deps, make_org, system, gupshup):
    org = await make_org("DemoClinic", catalog=True)
    _, token = await operators.add(deps.pool, org, "Beto")
    async with system(debounce_seconds=0.1) as s:
        api = OperatorClient(s.url, token)
        await say(s.url, gupshup, "hola")
        status, body = await api.call("POST", f"/chats/{PHONE}/takeover", {"reason": "cliente VIP"})
        assert status == 200 and body["paused"] == {"by": "Beto", "reason": "cliente VIP"}
        before = len(gupshup.sent)
        await say(s.url, gupshup, "¿cuánto cuesta la limpieza facial?", expect=0)
        chat = await eventually(lambda: _last_from_customer(api))
        assert chat["paused"]["by"] == "Beto" and chat["needs_person"]
        listed = (await api.call("GET", "/chats"))[1]["chats"][0]
        assert listed["needs_person"] and listed["waiting_since"]
    assert len(gupshup.sent) == before  # nobody answered: the bot stayed quiet


async def test_the_advisor_and_staff_phones_are_never_answered_nor_contacts(
    deps, make_org, system, gupshup
):
    org = await make_org(
        "DemoClinic", catalog=True, settings={**ESCALATING, "staff_phones": [STAFF]}
    )
    _, token = await operators.add(deps.pool, org, "Ana")
    async with system(debounce_seconds=0.1) as s:
        await say(s.url, gupshup, "quiero hablar con una persona", expect=2)
        before = len(gupshup.sent)
        for phone in (ADVISOR, STAFF):
            await say(s.url, gupshup, "hola, ¿qué horarios tienen mañana?", expect=0, phone=phone)
        # Gupshup's opt-in event for the advisor's number makes no contact either.
        opted_in = fixture("gupshup/gupshup_user_event_opted_in.json", app="DemoClinic")
        opted_in["payload"]["phone"] = ADVISOR
        assert (await post_webhook(s.url, opted_in))[0] == 200
        await eventually(lambda: settled(deps, org))
        api = OperatorClient(s.url, token)
        staff_chats = await eventually(lambda: _staff_chats(api, 2))
        for phone in (ADVISOR, STAFF):
            chat = await api.chat(phone)
            assert chat["kind"] == "staff" and chat["messages"][-1]["author"] == f"staff:{phone}"
        # A staff chat is never handed to the bot.
        assert (await api.call("POST", f"/chats/{ADVISOR}/handback"))[0] == 409
        # The customer's chat, waiting for a person, comes before the staff chats.
        assert (await api.call("GET", "/chats"))[1]["chats"][0]["phone"] == PHONE
    assert len(gupshup.sent) == before, [m.destination for m in gupshup.sent[before:]]
    assert {c["phone"] for c in staff_chats} == {ADVISOR, STAFF}
    contacts = await deps.pool.fetch(
        "select phone from contacts where organization_id = $1::uuid", org
    )
    assert [c["phone"] for c in contacts] == [PHONE]  # the advisor got the template, not a contact


async def test_a_staff_message_is_refused_when_the_contact_opted_out(
    deps, make_org, system, gupshup
):
    org = await make_org("DemoClinic", catalog=True)
    _, token = await operators.add(deps.pool, org, "Ana")
    async with system(debounce_seconds=0.1) as s:
        await say(s.url, gupshup, "STOP", expect=1)  # the opt-out confirmation
        api = OperatorClient(s.url, token)
        before = len(gupshup.sent)
        assert (await api.call("POST", f"/chats/{PHONE}/messages", {"text": "¿sigues ahí?"}))[
            0
        ] == 202
        chat = await eventually(lambda: _dropped(api))
    assert chat["dropped"] == "contact opted out" and len(gupshup.sent) == before


async def _waiting(api: OperatorClient) -> dict | None:
    found = (await api.call("GET", "/chats"))[1]["chats"]
    return found[0] if found and found[0]["needs_person"] and found[0]["waiting_since"] else None


async def _with_author(api: OperatorClient, author: str) -> dict | None:
    chat = await api.chat()
    return chat if any(m["author"] == author for m in chat["messages"]) else None


async def _last_from_customer(api: OperatorClient) -> dict | None:
    chat = await api.chat()
    return chat if chat["messages"][-1]["text"] == "¿cuánto cuesta la limpieza facial?" else None


async def _staff_chats(api: OperatorClient, n: int) -> list[dict] | None:
    found = [
        c
        for c in (await api.call("GET", "/chats"))[1]["chats"]
        if c["kind"] == "staff"
        and c["last_message"]
        and c["last_message"]["author"].startswith("staff:")
    ]
    return found if len(found) >= n else None


async def _dropped(api: OperatorClient) -> dict | None:
    mine = [m for m in (await api.chat())["messages"] if m["author"] == "staff:Ana"]
    return mine[-1] if mine and mine[-1]["dropped"] else None


def _rendered(recent: list[tuple[str, str]]) -> str:
    class Ctx:
        pass

    ctx = Ctx()
    ctx.recent = recent
    return prompts.context(ctx, {}, "")


async def test_a_voice_note_is_read_with_its_transcript_and_its_file(
    media_system, make_org, gupshup, deps
):
    org = await make_org(APP, app_id=APP_ID)
    other = await make_org("OtherClinic", token="other-clinic-token")
    _, token = await operators.add(deps.pool, org, "Ana")
    _, stranger = await operators.add(deps.pool, other, "Eve")
    async with media_system() as s:
        body, pid, data = webhook("gupshup_v3_audio.json", gupshup)
        await post_webhook(s.url, body)
        await eventually(lambda: row(deps, org, pid), timeout_s=15)
        chat = await OperatorClient(s.url, token).chat("917506080480")
        [note] = [m for m in chat["messages"] if m["media"]]
        assert note["media"]["transcript"] == f"[nota de voz] {DEFAULT_TRANSCRIPT}"
        async with aiohttp.ClientSession() as http:
            async with http.get(
                s.url + note["media"]["link"], headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == 200 and await response.read() == data
                assert response.headers["Content-Type"].startswith("audio/ogg")
            async with http.get(
                s.url + note["media"]["link"], headers={"Authorization": f"Bearer {stranger}"}
            ) as response:
                assert response.status == 404


async def test_a_media_link_in_supabase_storage_is_a_short_lived_signed_url(tmp_path):
    from storage.media_store import SupabaseMediaStore
    from tests.fakes.supabase_storage import FakeSupabaseStorage

    async def one_chunk():
        yield b"OggS voice"

    async with (
        FakeSupabaseStorage(api_key="service-role-key") as fake,
        aiohttp.ClientSession() as http,
    ):
        store = SupabaseMediaStore(http, fake.url, "service-role-key", spool_dir=tmp_path)
        await store.save("org/chat/m.ogg", one_chunk(), "audio/ogg", 100)
        link = await store.signed_url("org/chat/m.ogg", 300)
        async with http.get(link) as response:  # no key: the signature is the permission
            assert response.status == 200 and await response.read() == b"OggS voice"


async def test_the_model_reads_a_staff_answer_as_the_clinics_words_not_its_own(deps, settings):
    from pydantic_ai.messages import ModelResponse, ToolCallPart
    from pydantic_ai.models.function import AgentInfo, FunctionModel

    from graph.receptionist import Receptionist
    from storage.seed import seed_demo
    from tests.graph_helpers import NOW, Chat, redis_saver

    deps.clock = NOW.timestamp
    clinic = await seed_demo(deps.pool, today=clock.today())
    seen: list[str] = []

    def respond(messages, info: AgentInfo) -> ModelResponse:
        if "[agente:router]" in (info.instructions or ""):
            return ModelResponse(
                parts=[ToolCallPart(info.output_tools[0].name, {"flow": "knowledge"})]
            )
        seen.append(info.instructions or "")
        return ModelResponse(
            parts=[ToolCallPart(info.output_tools[0].name, {"reply": "Claro.", "done": True})]
        )

    chat = Chat(
        deps, Receptionist(deps, await redis_saver(settings), model=FunctionModel(respond)), clinic
    )
    await chat.say("hola")
    # What the sender records once a person's message is accepted (author staff:<name>).
    await memory.remember(
        deps.redis, clinic, chat.phone, "staff", "Te guardé el jueves a las 3 pm."
    )
    await chat.say("perfecto, ¿y cuánto cuesta?")
    assert "Equipo de la clínica (una persona): Te guardé el jueves a las 3 pm." in seen[-1]
    assert "Tú: Te guardé" not in seen[-1]
