"""Property-based fuzzing of the webhook: any body, any headers, any encoding gets a 2xx or a
4xx with a reason, never a 5xx; the parsers either understand a body or say which field is
wrong, never crash. Examples are bounded and derandomized, so `make test` stays fast and
repeatable; raise FUZZ_EXAMPLES for a longer hunt."""

from __future__ import annotations

import gzip
import json
import os
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingress.gupshup import MalformedPayload, identify_app, parse_webhook
from ingress.webhook import MAX_JSON_DEPTH, _depth_exceeds, clean, parse_json
from storage.events import decode, encode
from tests.helpers import FIXTURES, fixture

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
BODY_NAMES = [
    p.name
    for p in sorted((FIXTURES / "gupshup").glob("*.json"))
    if p.name.startswith(
        (
            "gupshup_v2_",
            "gupshup_v3_",
            "gupshup_message_event",
            "gupshup_user_event",
            "gupshup_platform_event",
        )
    )
    and "send_response" not in p.name
]
BODIES = [fixture(f"gupshup/{name}") for name in BODY_NAMES]
# Every app the fixtures name (v2 by name, v3 by id), so their bodies get past the app check
# and into the parsers.
APPS = {
    "docdeck": "07c7c72d-20e3-4ff9-a5a1-14d1186eeec8",
    "DemoAPI": None,
    "DemoApp": None,
    "MyBusinessApp": None,
    "StatusApp": "82ed52f4-30c0-4f12-81b4-e7ad07bd41de",
}
TOKEN = "fuzz-token-0123456789"

# Text as JSON can carry it, including what nothing downstream can hold (NUL, lone surrogates).
UNHOLDABLE = "\x00\ud800\udfff"
texts = st.one_of(st.text(max_size=40), st.text(st.sampled_from("a " + UNHOLDABLE), max_size=8))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.text(max_size=12) | texts, inner, max_size=6),
    ),
    max_leaves=40,
)
# Phone numbers in the shapes senders get wrong: with +, spaces, letters, huge, empty, numbers.
phones = st.one_of(
    st.from_regex(r"\+?[0-9 ()-]{0,20}", fullmatch=True),
    texts,
    st.integers(),
    st.floats(),
    st.just(""),
    st.just("callbackSetPhone"),
)


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON value where something could be replaced."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += paths(child, prefix + (i,))
    return found


# A value of every JSON type, for any field of any fixture: the shape that found the contact-card
# 500 (`phones` as a number). Random replacement rarely hits a given field of a given fixture,
# so the tests below also walk every node of every fixture with each of these.
WRONG_TYPES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -7,
    1.5,
    2**64,
    "",
    "x",
    [],
    [1],
    ["x"],
    [{}],
    {},
    {"x": 1},
)
# One of each JSON type, for the walk through HTTP (where each request costs a round trip).
ONE_OF_EACH_TYPE: tuple[Any, ...] = (None, True, 7, "x", [1], {"x": 1})
# The fields an event cannot mean anything without: a wrong type in one of them may refuse the
# body (a 400 naming it). Anything else is optional and may only be ignored, never cost the event.
NEEDED = frozenset(
    {
        "object",
        "entry",
        "changes",
        "field",
        "value",
        "messages",
        "statuses",
        "type",
        "payload",
        "id",
        "gsId",
        "gs_id",
        "status",
        "source",
        "from",
        "phone",
        "text",
        "body",
        "url",
        "latitude",
        "longitude",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
    }
)


def replaced(body: dict, where: tuple, value: Any) -> dict:
    """A copy of `body` with the node at `where` replaced by `value`."""
    body = json.loads(json.dumps(body))
    parent = body
    for step in where[:-1]:
        parent = parent[step]
    parent[where[-1]] = value
    return body


def retyped(body: dict, values: tuple[Any, ...]) -> list[tuple[tuple, Any, dict]]:
    """Every node of `body` replaced, one at a time, by each value that changes it."""
    return [
        (where, value, replaced(body, where, value))
        for where in paths(body)[1:]
        for value in values
        if json.dumps(value) != json.dumps(_at(body, where))
    ]


def _at(body: Any, where: tuple) -> Any:
    for step in where:
        body = body[step]
    return body


def dotted(where: tuple) -> str:
    """A path as the parsers name it in their reasons: entry[0].changes[0].field."""
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in where).lstrip(
        "."
    )


def is_needed(where: tuple) -> bool:
    """Whether the node at `where` is (or is an item of) a field the event needs."""
    key = next((step for step in reversed(where) if isinstance(step, str)), None)
    # Everything on a contact card is optional: an odd card is still a contact message.
    return key in NEEDED and "contacts" not in where


@st.composite
def retyped_fixture(draw) -> dict:
    """A real Gupshup body with one node replaced by a value of another JSON type."""
    body = draw(st.sampled_from(BODIES))
    where = draw(st.sampled_from(paths(body)[1:]))
    return replaced(body, where, draw(st.sampled_from(WRONG_TYPES) | json_values))


@st.composite
def mutated_fixture(draw) -> dict:
    """A real Gupshup body with one to three places replaced by anything, or a phone oddity."""
    body = json.loads(json.dumps(draw(st.sampled_from(BODIES))))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(body)[1:]))
        parent = body
        for step in where[:-1]:
            parent = parent[step]
        last = where[-1]
        is_phone = isinstance(last, str) and last in ("source", "phone", "from", "wa_id")
        if isinstance(parent[last], str) and draw(st.booleans()):
            # Same field, same type, one character JSON can carry and nothing downstream can.
            parent[last] += draw(st.sampled_from(UNHOLDABLE))
        else:
            parent[last] = draw(phones if is_phone else json_values)
        if draw(st.booleans()):
            break
    return body


def deep(levels: int) -> bytes:
    return b'{"app": "docdeck", "payload": ' + b"[" * levels + b"]" * levels + b"}"


raw_bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),
    mutated_fixture().map(lambda b: json.dumps(b).encode()),
    mutated_fixture().map(lambda b: json.dumps(b).encode("utf-16")),  # not UTF-8 at all
    st.integers(1, 20_000).map(deep),
    st.integers(0, 20_000).map(lambda n: b'{"app": "docdeck", "x": [' + b"1," * n + b"1]}"),
    st.binary(min_size=1, max_size=50).map(lambda b: b'{"app": "docdeck", "t": "' + b + b'"}'),
)


def parse_or_reason(body: dict) -> list | str:
    """The events a body holds (each checked to cross a stream intact), or the refusal's reason."""
    body = clean(body)  # as the endpoint does before parsing
    try:
        identify_app(body)
        parsed = parse_webhook(body, "org", 1_700_000_000_000)
    except MalformedPayload as exc:
        assert str(exc)
        return str(exc)
    for event in parsed.events:  # whatever was understood can cross a stream and come back
        again = decode(encode(event))
        # raw keeps the body as sent, except what JSON cannot hold (NaN and infinities: null)
        assert again.model_dump(exclude={"raw"}) == event.model_dump(exclude={"raw"})
        assert encode(decode(encode(again))) == encode(again)
    return parsed.events


@FUZZ
@given(
    body=st.one_of(
        mutated_fixture(), retyped_fixture(), json_values.filter(lambda v: isinstance(v, dict))
    )
)
def test_parsers_understand_a_body_or_name_the_field_at_fault(body):
    parse_or_reason(body)


@pytest.mark.parametrize("name", BODY_NAMES)
def test_every_field_of_every_fixture_tolerates_every_json_type(name):
    """Each node of a real body, replaced by each JSON type: a needed field refused with a
    reason that names it (or what is missing inside it), an optional one ignored."""
    body = fixture(f"gupshup/{name}")
    expected = [event.type for event in parse_or_reason(body)]
    for where, value, mutated in retyped(body, WRONG_TYPES):
        outcome = parse_or_reason(mutated)
        case = (dotted(where), value, outcome)
        if isinstance(outcome, str):
            assert is_needed(where), case  # an optional field cost the event
            # The reason names the field, or a field inside it that the new value lacks.
            named = outcome.split(" is ")[0]
            assert dotted(where) in outcome or named.startswith(dotted(where)), case
        elif not is_needed(where):
            assert [event.type for event in outcome] == expected, case


@FUZZ
@given(raw=raw_bodies)
def test_any_bytes_are_a_json_object_or_a_400_with_a_reason(raw):
    outcome = parse_json(raw)
    if not isinstance(outcome, dict):
        assert outcome.status == 400 and json.loads(outcome.body)["error"]


def parse_json_slowly(raw: bytes) -> dict | None:
    """What parse_json gives, the plain way: `json`, a walk for depth, then clean; None if refused."""
    try:
        body = json.loads(raw)
    except (RecursionError, ValueError):
        return None
    if not isinstance(body, dict) or _depth_exceeds(body, MAX_JSON_DEPTH):
        return None
    return clean(body)


@FUZZ
@given(
    raw=st.one_of(
        raw_bodies,
        st.sampled_from(
            [
                b'{"a": "\\u0000", "b": "\\ud83d\\ude00", "c": "\\ud800"}',
                b'{"n": 18446744073709551616}',
                b'{"n": -9223372036854775809, "m": 1e400, "k": NaN}',
                b'{"a": 1, "a": 2}',
                b'\xef\xbb\xbf{"a": 1}',
                b'{"a": "\xed\xa0\x80"}',
                b'{"a": [1.5, -0, -0.0, 1E2]}',
            ]
        ),
    )
)
def test_the_fast_json_path_reads_every_body_as_json_and_clean_would(raw):
    outcome = parse_json(raw)
    expected = parse_json_slowly(raw)
    if expected is None:
        assert not isinstance(outcome, dict) and outcome.status == 400
    else:
        assert repr(outcome) == repr(expected)  # repr: int stays int, NaN equals NaN


@st.composite
def requests(draw) -> tuple[str, dict[str, str], bytes]:
    token = draw(st.sampled_from([TOKEN] * 6 + ["", "wrong-token-0000", "x" * 300]))
    where = draw(st.sampled_from(["query", "query", "header", "both"]))
    path = "/webhooks/gupshup" + draw(st.sampled_from(["", "/status"]))
    headers: dict[str, str] = {}
    if where in ("query", "both"):
        path += f"?token={token}"
    if where in ("header", "both"):
        headers["Authorization"] = draw(st.sampled_from(["Bearer ", "bearer ", "Basic "])) + token
    headers["Content-Type"] = draw(
        st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/json; charset=latin-1",
                "multipart/form-data; boundary=x",
            ]
        )
    )
    body = draw(
        st.one_of(
            st.sampled_from(BODIES).map(lambda b: json.dumps(b).encode()),
            mutated_fixture().map(lambda b: json.dumps(b).encode()),
            retyped_fixture().map(lambda b: json.dumps(b).encode()),
            raw_bodies,
        )
    )
    encoding = draw(st.sampled_from([None] * 6 + ["gzip", "deflate", "br", "gzip-garbage"]))
    if encoding == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif encoding == "gzip-garbage":
        headers["Content-Encoding"] = "gzip"  # says gzip, is not
    elif encoding:
        headers["Content-Encoding"] = encoding
    return path, headers, body


@pytest.fixture
async def ingress(system, make_org):
    """One ingress for all the examples of a test, and a client that leaves bodies as sent."""
    for app, app_id in APPS.items():
        await make_org(app, token=TOKEN, app_id=app_id)
    async with (
        system(roles=("ingress",)) as s,
        aiohttp.ClientSession(auto_decompress=False) as http,
    ):
        yield s.url, http, {}


@FUZZ
@given(request=requests())
async def test_the_webhook_answers_any_request_with_a_2xx_or_a_4xx(ingress, request):
    url, http, seen = ingress
    path, headers, body = request
    async with http.post(url + path, data=body, headers=headers) as response:
        text = await response.text(errors="replace")
    seen[response.status] = seen.get(response.status, 0) + 1
    assert response.status < 500, (response.status, text, headers, body[:200])
    if response.status >= 400 and response.content_type == "application/json":
        assert json.loads(text)["error"]


async def test_the_webhook_answers_every_field_of_every_fixture_in_every_json_type(ingress):
    """Through HTTP, every node of every fixture as each JSON type: 2xx or a 4xx with its
    reason, never a 5xx; after each fixture's walk the untouched fixture is still accepted and
    health answers. One ingress for all of them: starting one per fixture cost more than the walk."""
    url, http, _ = ingress
    for name, body in zip(BODY_NAMES, BODIES):
        for where, value, mutated in retyped(body, ONE_OF_EACH_TYPE):
            async with http.post(f"{url}/webhooks/gupshup?token={TOKEN}", json=mutated) as response:
                text = await response.text()
            case = (name, dotted(where), value, response.status, text)
            assert response.status < 500, case
            if response.status >= 400:
                assert json.loads(text)["error"], case
        async with http.post(f"{url}/webhooks/gupshup?token={TOKEN}", json=body) as response:
            assert response.status == 200, (name, await response.text())
        async with http.get(f"{url}/healthz") as response:
            assert response.status == 200, name
