"""The organization's catalogue as the receptionist reads it: profile, services, FAQ, hours.

Every function takes the organization first and filters every query by it, so a caller cannot
reach another tenant's rows by passing a foreign id. Search is Spanish full-text search with
unaccent, OR'ed words, plus trigram similarity, so "limpiesa facial" finds "Limpieza facial".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from storage.db import Db

# word_similarity of a service name inside the query: "limpiesa facial" vs "Limpieza facial" is
# about 0.7, an unrelated word about 0.2.
SERVICE_MATCH_MIN = 0.45


@dataclass(frozen=True)
class OrgProfile:
    id: str
    name: str
    timezone: str
    settings: dict[str, Any]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    description: str
    duration_minutes: int
    price: Decimal
    currency: str


@dataclass(frozen=True)
class Hit:
    kind: str  # "service" or "faq"
    title: str
    text: str
    score: float
    service: Service | None = None


async def org_profile(db: Db, org: str) -> OrgProfile | None:
    row = await db.fetchrow(
        "select id::text, name, timezone, settings from organizations where id = $1::uuid", org
    )
    return OrgProfile(**dict(row)) if row else None


# ---- catalogue ----------------------------------------------------------------------------

_SERVICE_COLS = "s.id::text, s.name, s.description, s.duration_minutes, s.price, s.currency"

# An OR of the query's Spanish lexemes: a question mentions a service among other words, so an
# AND of every word (plainto_tsquery) would almost never match.
TSQUERY_ANY_WORD = "nullif(replace(plainto_tsquery('spanish', immutable_unaccent($2))::text, '&', '|'), '')::tsquery"


async def search_services(
    db: Db, org: str, query: str, limit: int = 5
) -> list[tuple[Service, float]]:
    rows = await db.fetch(
        f"""
        with q as (select immutable_unaccent(lower($2)) as text, {TSQUERY_ANY_WORD} as ts)
        select {_SERVICE_COLS},
               word_similarity(immutable_unaccent(lower(s.name)), q.text)
               + coalesce(ts_rank(to_tsvector('spanish', immutable_unaccent(s.name || ' ' || s.description)), q.ts), 0)
               as score
        from services s, q
        where s.organization_id = $1::uuid and s.active
          and (to_tsvector('spanish', immutable_unaccent(s.name || ' ' || s.description)) @@ q.ts
               or word_similarity(immutable_unaccent(lower(s.name)), q.text) > 0.3)
        order by score desc, s.name limit $3""",
        org,
        query,
        limit,
    )
    return [(Service(*list(r.values())[:6]), float(r["score"])) for r in rows]


async def search_knowledge(
    db: Db, org: str, query: str, limit: int = 5, query_vector: list[float] | None = None
) -> list[Hit]:
    """Services and FAQ entries that match a question, best first (typos tolerated).

    With the question's embedding, entries close in meaning join in (hybrid search): "¿dónde
    queda el local?" finds "¿Dónde están ubicados?" though they share no word but "dónde".
    """
    hits = await _lexical_hits(db, org, query, limit)
    if query_vector is not None:
        hits = _fuse(hits, await _semantic_hits(db, org, query_vector, limit))
    hits.sort(key=lambda h: -h.score)
    return hits[:limit]


async def _lexical_hits(db: Db, org: str, query: str, limit: int) -> list[Hit]:
    hits = [
        Hit("service", s.name, s.description, score, s)
        for s, score in await search_services(db, org, query, limit)
    ]
    rows = await db.fetch(
        f"""
        with q as (select immutable_unaccent(lower($2)) as text, {TSQUERY_ANY_WORD} as ts)
        select k.question, k.answer,
               word_similarity(immutable_unaccent(lower(k.question)), q.text)
               + coalesce(ts_rank(to_tsvector('spanish', immutable_unaccent(k.question || ' ' || k.answer)), q.ts), 0)
               as score
        from knowledge_entries k, q
        where k.organization_id = $1::uuid
          and (to_tsvector('spanish', immutable_unaccent(k.question || ' ' || k.answer)) @@ q.ts
               or similarity(immutable_unaccent(lower(k.question)), q.text) > 0.3)
        order by score desc limit $3""",
        org,
        query,
        limit,
    )
    hits += [Hit("faq", r["question"], r["answer"], float(r["score"])) for r in rows]
    return hits


# pgvector takes its input as text ('[0.1,0.2,...]'): asyncpg has no codec for the vector type.
def vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(f"{v:.6f}" for v in vector) + "]"


SEMANTIC_MIN = 0.35  # cosine similarity below which a neighbour is noise


async def _semantic_hits(db: Db, org: str, vector: list[float], limit: int) -> list[Hit]:
    literal = vector_literal(vector)
    services = await db.fetch(
        f"""
        select {_SERVICE_COLS}, 1 - (s.embedding <=> $2::text::vector) as score
        from services s where s.organization_id = $1::uuid and s.active and s.embedding is not null
        order by s.embedding <=> $2::text::vector limit $3""",
        org,
        literal,
        limit,
    )
    faqs = await db.fetch(
        """
        select question, answer, 1 - (embedding <=> $2::text::vector) as score
        from knowledge_entries where organization_id = $1::uuid and embedding is not null
        order by embedding <=> $2::text::vector limit $3""",
        org,
        literal,
        limit,
    )
    hits = [
        Hit(
            "service",
            r["name"],
            r["description"],
            float(r["score"]),
            Service(*list(r.values())[:6]),
        )
        for r in services
    ]
    hits += [Hit("faq", r["question"], r["answer"], float(r["score"])) for r in faqs]
    return [h for h in hits if h.score >= SEMANTIC_MIN]


def _fuse(lexical: list[Hit], semantic: list[Hit]) -> list[Hit]:
    """One list: an entry found both ways scores the sum, so agreement ranks first."""
    by_key = {(h.kind, h.title): h for h in lexical}
    for hit in semantic:
        key = (hit.kind, hit.title)
        found = by_key.get(key)
        by_key[key] = replace(found, score=found.score + hit.score) if found else hit
    return list(by_key.values())


# ---- embeddings backfill -------------------------------------------------------------------


async def without_embedding(db: Db, org: str) -> list[tuple[str, str, str]]:
    """(table, id, text) of the catalogue entries that have no embedding yet."""
    rows = await db.fetch(
        """
        select 'services' as tbl, id::text, name || '. ' || description as text from services
        where organization_id = $1::uuid and embedding is null
        union all
        select 'knowledge_entries', id::text, question || ' ' || answer from knowledge_entries
        where organization_id = $1::uuid and embedding is null""",
        org,
    )
    return [(r["tbl"], r["id"], r["text"]) for r in rows]


async def set_embedding(db: Db, org: str, table: str, row_id: str, vector: list[float]) -> None:
    if table not in ("services", "knowledge_entries"):
        raise ValueError(f"no embeddings in {table}")
    await db.execute(
        f"update {table} set embedding = $3::text::vector "
        "where id = $2::uuid and organization_id = $1::uuid",
        org,
        row_id,
        vector_literal(vector),
    )


async def find_service(db: Db, org: str, query: str) -> Service | None:
    """The one service a phrase names ("limpiesa facial", "quiero un masaje relajante"), if any."""
    found = await search_services(db, org, query, 1)
    if not found:
        return None
    service, score = found[0]
    return service if score >= SERVICE_MATCH_MIN else None


async def get_service(db: Db, org: str, service_id: str) -> Service | None:
    row = await db.fetchrow(
        f"select {_SERVICE_COLS} from services s "
        "where s.organization_id = $1::uuid and s.id = $2::uuid",
        org,
        service_id,
    )
    return Service(*row.values()) if row else None


async def list_services(db: Db, org: str) -> list[Service]:
    rows = await db.fetch(
        f"select {_SERVICE_COLS} from services s "
        "where s.organization_id = $1::uuid and s.active order by s.name",
        org,
    )
    return [Service(*r.values()) for r in rows]


async def business_hours(db: Db, org: str) -> list[tuple[int, time, time]]:
    rows = await db.fetch(
        "select weekday, opens, closes from business_hours "
        "where organization_id = $1::uuid order by weekday, opens",
        org,
    )
    return [(r["weekday"], r["opens"], r["closes"]) for r in rows]


async def faq_answers(db: Db, org: str) -> list[tuple[str, str]]:
    rows = await db.fetch(
        "select question, answer from knowledge_entries "
        "where organization_id = $1::uuid order by created_at",
        org,
    )
    return [(r["question"], r["answer"]) for r in rows]
