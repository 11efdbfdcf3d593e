"""A message from a known chat writes nothing to PostgreSQL but its own row (and the chat's
last_inbound_at, in the same statement): the identity lookup is a read."""

from __future__ import annotations

from storage import chats
from tests import clock


async def _versions(deps, org) -> tuple[str, str]:
    """The row versions (xmin) of the chat identity and the contact: a write changes them."""
    row = await deps.pool.fetchrow(
        "select i.xmin::text as identity, c.xmin::text as contact from chat_identities i "
        "join contacts c on c.id = i.contact_id where i.organization_id = $1::uuid",
        org,
    )
    return row["identity"], row["contact"]


async def test_a_known_chat_is_read_not_written(deps, make_org):
    org = await make_org("clinic")
    first = await chats.upsert_identity(deps.pool, org, "573001110000", "Ana")
    before = await _versions(deps, org)
    again = await chats.upsert_identity(deps.pool, org, "573001110000", "Ana")
    unnamed = await chats.upsert_identity(deps.pool, org, "573001110000", None)
    assert again == first == unnamed
    assert await _versions(deps, org) == before
    # The message row and last_inbound_at: one statement, and the contact is untouched.
    await chats.insert_inbound(
        deps.pool,
        org=org,
        identity=again,
        provider_id="p-1",
        message="hola",
        processed_text="hola",
        sent_at_ms=clock.now_ms(),
    )
    after = await _versions(deps, org)
    assert after[1] == before[1]
    # A new profile name is written.
    renamed = await chats.upsert_identity(deps.pool, org, "573001110000", "Ana María")
    assert renamed.id == first.id
    assert (
        await deps.pool.fetchval(
            "select profile_name from chat_identities where id = $1::uuid", first.id
        )
        == "Ana María"
    )
