"""The pgvector hybrid knowledge search, with embeddings from the fake OpenAI server."""

from __future__ import annotations

import pytest
from openai import AsyncOpenAI

from graph.embeddings import Embedder, backfill
from graph.receptionist import Receptionist
from storage import catalog
from storage.seed import seed_demo
from tests.fakes.openai import FakeOpenAI
from tests.graph_helpers import Chat, redis_saver
from tests import clock

QUESTION = "¿dónde queda el local?"


@pytest.fixture
async def fake(allow_model_requests):
    async with FakeOpenAI() as server:
        # The fake's embedding model knows these words name the same thing: where we are.
        server.synonyms = {
            "queda": "ubicacion",
            "ubicados": "ubicacion",
            "local": "ubicacion",
            "calle": "ubicacion",
        }
        yield server


@pytest.fixture
def embedder(fake) -> Embedder:
    return Embedder(
        AsyncOpenAI(base_url=fake.url + "/v1", api_key="k", max_retries=0), "text-embedding-3-small"
    )


async def test_a_question_finds_an_entry_close_in_meaning(deps, fake, embedder):
    org = await seed_demo(deps.pool, today=clock.today())
    assert await backfill(deps.pool, embedder, org) > 12
    assert await backfill(deps.pool, embedder, org) == 0  # nothing left to embed
    lexical = await catalog.search_knowledge(deps.pool, org, QUESTION)
    vector = (await embedder.embed([QUESTION]))[0]
    hybrid = await catalog.search_knowledge(deps.pool, org, QUESTION, query_vector=vector)
    assert "¿Dónde están ubicados?" not in [h.title for h in lexical[:1]]
    assert hybrid[0].title == "¿Dónde están ubicados?" and "Calle 93" in hybrid[0].text
    assert fake.calls[-1]["dimensions"] == 384


async def test_the_receptionist_answers_through_the_hybrid_search(deps, settings, embedder):
    """Without the embeddings this question gets "No encontré información sobre eso"."""
    org = await seed_demo(deps.pool, today=clock.today())
    await backfill(deps.pool, embedder, org)
    chat = Chat(deps, Receptionist(deps, await redis_saver(settings), embedder=embedder), org)
    await chat.say(QUESTION)
    assert "Calle 93" in chat.text
