"""Clinical safety without a model: an emergency gets the emergency line and a person at once,
with every model request failing; the prompts forbid medical advice."""

from __future__ import annotations

import pytest

from graph import prompts, safety
from tests import clock
from tests.conftest import eventually
from tests.helpers import post_webhook, settled, text_webhook

ADVISOR = "573009990001"


@pytest.mark.parametrize(
    "text",
    [
        "me estoy desangrando",
        "no para de sangrar la herida",
        "No puedo respirar!!",
        "creo que tengo una reacción alérgica a la crema",
        "se me está hinchando la cara",
        "me duele el pecho, dolor en el pecho fuerte",
        "mi mamá se desmayó en la sala",
        "I can't breathe",
        "não consigo respirar",
    ],
)
def test_emergencies_are_recognised(text):
    assert safety.is_emergency([text])


@pytest.mark.parametrize(
    "text",
    [
        "quiero una cita para depilación",
        "¿cuánto cuesta el masaje?",
        "sangre de drago tienen?",
        "¿la limpieza facial deja la cara roja?",
        "me gustaría respirar tranquila en un masaje",
    ],
)
def test_ordinary_messages_are_not_emergencies(text):
    assert not safety.is_emergency([text])


def test_the_prompt_forbids_diagnoses_and_doses():
    assert "nunca des diagnósticos, dosis" in prompts.BASE


async def test_an_emergency_is_handed_to_a_person_with_the_line_while_the_model_is_down(
    system, make_org, gupshup, deps, allow_model_requests
):
    """The model points at a server that refuses every request: the emergency still gets the
    line at once, and the advisor's template goes out."""
    org = await make_org(
        "clinic",
        catalog=True,
        settings={
            "advisor_phone": ADVISOR,
            "escalation_template_id": "tmpl-advisor",
            "emergency_phone": "123",
        },
    )
    phone = "573001118888"
    overrides = {
        "llm_model": "openai:gpt-test",
        "openai_base_url": "http://127.0.0.1:9/v1",
        "openai_api_key": "x",
        "router_keywords": False,
        "debounce_seconds": 0.1,
    }
    async with system(**overrides) as s:
        await post_webhook(
            s.url,
            text_webhook("clinic", phone, "ayuda me estoy desangrando", "em-1", clock.now_ms()),
        )
        sent = await gupshup.wait_for_sent(3, timeout_s=20)
        await eventually(lambda: settled(deps.redis, org))
    to_customer = [m.message.get("text", "") for m in sent if m.destination == phone]
    assert any("123" in text and "emergencia" in text for text in to_customer), to_customer
    assert [m.kind for m in sent if m.destination == ADVISOR] == ["template"]
    assert any("equipo ya fue avisada" in text for text in to_customer), to_customer
