"""Operator credentials: bearer tokens for the clinic's team, per organization.

A token is `sko_` plus 32 random bytes (URL-safe base64), shown once when it is made; only its
SHA-256 is stored. A plain hash (no salt, no slow KDF) is enough because the secret is random
and 256 bits long: nothing to guess from a dictionary, and the ingress can find the token by
its digest in one indexed query.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

TOKEN_PREFIX = "sko_"
# A name is written into every message the person sends ("staff:<name>"): short and plain.
NAME_PATTERN = re.compile(r"[\w .@'-]{1,60}")


class BadOperator(ValueError):
    """An operator name or id that cannot be used."""


@dataclass(frozen=True)
class Operator:
    """Who is calling the operator API: their organization and the name their messages carry."""

    id: str
    org: str
    name: str

    @property
    def author(self) -> str:
        return f"staff:{self.name}"


@dataclass(frozen=True)
class OperatorRow:
    id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise BadOperator(
            f"{name!r}: an operator name is 1 to 60 letters, digits, spaces or . @ ' -"
        )
    return name


async def add(pool: asyncpg.Pool, org: str, name: str) -> tuple[str, str]:
    """Create an operator; returns (its id, the token), the token's only appearance."""
    name = check_name(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        operator_id = await pool.fetchval(
            "insert into operator_tokens (organization_id, name, token_sha256) "
            "values ($1::uuid, $2, $3) returning id::text",
            org,
            name,
            digest(token),
        )
    except asyncpg.ForeignKeyViolationError:
        raise BadOperator(f"no organization {org}") from None
    return operator_id, token


async def revoke(pool: asyncpg.Pool, org: str, operator_id: str) -> bool:
    """Revoke a token at once (the next request with it gets 401); False if there is none."""
    try:
        result = await pool.execute(
            "update operator_tokens set revoked_at = now() where organization_id = $1::uuid"
            " and id = $2::uuid and revoked_at is null",
            org,
            operator_id,
        )
    except asyncpg.DataError:  # not a UUID
        return False
    return result.endswith(" 1")


async def list_operators(pool: asyncpg.Pool, org: str) -> list[OperatorRow]:
    rows = await pool.fetch(
        "select id::text, name, created_at, last_used_at, revoked_at from operator_tokens"
        " where organization_id = $1::uuid order by created_at",
        org,
    )
    return [OperatorRow(**dict(r)) for r in rows]


async def authenticate(pool: asyncpg.Pool, token: str) -> Operator | None:
    """The operator of a bearer token, None if it is unknown or revoked.

    Looked up by digest, never by the token: the database compares digests of a 256-bit secret,
    so its comparison leaks nothing usable about the token. last_used_at is kept to the minute
    (one write a minute per operator, not one per poll of the inbox).
    """
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    row = await pool.fetchrow(
        "select id::text, organization_id::text as org, name,"
        " last_used_at is null or last_used_at < now() - interval '1 minute' as stale"
        " from operator_tokens where token_sha256 = $1 and revoked_at is null",
        digest(token),
    )
    if row is None:
        return None
    if row["stale"]:
        await pool.execute(
            "update operator_tokens set last_used_at = now() where id = $1::uuid"
            " and organization_id = $2::uuid",
            row["id"],
            row["org"],
        )
    return Operator(id=row["id"], org=row["org"], name=row["name"])
