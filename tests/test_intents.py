"""The router's keyword fast path on realistic customer messages: a message goes straight to an
expert only when it plainly asks for one thing; anything else is left to the model router."""

from __future__ import annotations

import pytest

from graph.intents import clear_flow, normalize, says_no, says_yes


@pytest.mark.parametrize(
    "text, flow",
    [
        ("hola", "knowledge"),
        ("Buenas tardes", "knowledge"),
        ("gracias", "knowledge"),
        ("¿Cuánto cuesta la limpieza facial?", "knowledge"),
        ("¿dónde quedan?", "knowledge"),
        ("quiero agendar una cita", "appointment"),
        ("hola, quiero una cita para el viernes", "appointment"),
        ("el viernes a las 3", "appointment"),
        ("necesito cancelar mi cita", "appointment"),
        ("quiero hablar con una persona", "escalation"),
        ("me pasas con un asesor", "escalation"),
        ("pásame con alguien", "escalation"),
    ],
)
def test_a_plain_message_names_its_expert(text, flow):
    assert clear_flow(text) == flow


@pytest.mark.parametrize(
    "text",
    [
        "hola, ¿cuánto cuesta la limpieza facial? ¿tienen algo mañana en la tarde?",  # a question and a booking
        "¿Las extensiones son de cabello humano?",  # a noun, not a request for a person
        "Para una persona",
        "¿Tienen asesora de imagen?",
        "Gracias, nos vemos mañana",  # a goodbye that names a day
        "Ok, hasta mañana",
        "¿Abren el sábado?",  # opening hours, not a booking
        "¿Me atienden hoy a las 3?",
        "La cita de ayer fue horrible, me dejaron las uñas mal",  # upset: the model judges
        "Me cobraron dos veces con la tarjeta",
        "esto es terrible, nadie me contesta",
        "Ana",
        "la 2",
        "no",
        "mmm no sé",
    ],
)
def test_a_mixed_or_unclear_message_is_left_to_the_model(text):
    assert clear_flow(text) is None


@pytest.mark.parametrize("text", ["sí", "Sí.", "si, cancélala", "claro", "confirmo", "dale", "ok"])
def test_a_short_plain_yes_confirms(text):
    assert says_yes(normalize(text)) and not says_no(normalize(text))


@pytest.mark.parametrize(
    "text",
    [
        "dale, déjame pensarlo",
        "por favor, ¿me recuerdas a qué hora es?",
        "ok pero ¿cuánto me cobran por cancelar?",
        "listo, ¿y puedo mejor cambiarla?",
        "claro que no",
        "no",
    ],
)
def test_anything_more_than_a_plain_yes_does_not_confirm(text):
    assert not says_yes(normalize(text))
