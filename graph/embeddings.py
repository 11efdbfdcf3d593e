"""Text embeddings for the hybrid knowledge search (pgvector), when a model is configured.

`EMBEDDING_MODEL=openai:text-embedding-3-small` (any OpenAI-compatible server through
OPENAI_BASE_URL). The schema stores vector(384), so the model is asked for that many dimensions.
With no embedding model the search is lexical only (full-text plus trigram).
"""

from __future__ import annotations

import logging

import asyncpg
from openai import AsyncOpenAI

from ops.settings import Settings

log = logging.getLogger(__name__)

DIMENSIONS = 384  # storage/migrations: services.embedding and knowledge_entries.embedding


class Embedder:
    def __init__(self, client: AsyncOpenAI, model: str) -> None:
        self.client = client
        self.model = model

    async def embed(self, texts: list[str]) -> list[list[float]]:
        response = await self.client.embeddings.create(
            model=self.model, input=texts, dimensions=DIMENSIONS
        )
        return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]


def build_embedder(settings: Settings) -> Embedder | None:
    if not settings.embedding_model:
        return None
    provider, _, model = settings.embedding_model.partition(":")
    if provider != "openai" or not model:
        raise ValueError(f"EMBEDDING_MODEL {settings.embedding_model!r}: expected 'openai:<model>'")
    client = AsyncOpenAI(
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key or "none",
        max_retries=1,
        timeout=10,
    )
    log.info("embeddings: %s (hybrid knowledge search on)", model)
    return Embedder(client, model)


async def backfill(pool: asyncpg.Pool, embedder: Embedder, org: str, batch: int = 64) -> int:
    """Embed the organization's services and FAQ entries that have no embedding yet."""
    from storage import catalog

    missing = await catalog.without_embedding(pool, org)
    for start in range(0, len(missing), batch):
        chunk = missing[start : start + batch]
        vectors = await embedder.embed([text for _, _, text in chunk])
        for (table, row_id, _), vector in zip(chunk, vectors):
            await catalog.set_embedding(pool, org, table, row_id, vector)
    return len(missing)
