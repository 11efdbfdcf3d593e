"""What Gupshup tells us about delivery and consent: status events, user events, STOP keywords.

None of these ever starts an agent turn.
"""

from __future__ import annotations

import logging
import re
import unicodedata

from consumers.outcomes import Outcome
from consumers.runtime import Delivery, Retry
from consumers.send_doubts import SendEvidence
from ops import metrics
from ops.deps import Deps
from graph import i18n
from storage import chats, consent, org_settings, ratelimit, statuses, streams
from storage.events import OutboundMessage, StatusEvent, UserEvent
from storage.org_settings import staff_phones
from storage.orgs import ConnectionsByOrg
from storage.keys import Stream

log = logging.getLogger(__name__)

NUMBER_OPTED_OUT = 1012  # Gupshup: the number opted out
API_RATE_LIMITED = 4001  # Gupshup: slow down
MARKETING_STOPPED = 131050  # Meta: the user stopped marketing messages
UNMATCHED_GRACE_MS = 60_000  # a status may race the row update of its own send: retry meanwhile

# Spanish, English and Portuguese ("PARAR" is both).
STOP_WORDS = {
    "stop",
    "sair",
    "descadastrar",
    "nao quero mais mensagens",
    "cancelar inscricao",
    "baja",
    "darme de baja",
    "dar de baja",
    "no mas mensajes",
    "no quiero mas mensajes",
    "unsubscribe",
    "cancelar suscripcion",
    "parar",
    "alto",
}
START_WORDS = {"start", "alta", "suscribir", "volver a recibir mensajes", "voltar", "unstop"}
# The keyword's language when the chat has none yet (a first message "STOP"); "parar" is
# Spanish and Portuguese: the organization's language decides.
_KEYWORD_LANGUAGE = {"stop": "en", "unsubscribe": "en", "start": "en", "unstop": "en"}
_KEYWORD_LANGUAGE |= dict.fromkeys(
    ["sair", "descadastrar", "nao quero mais mensagens", "cancelar inscricao", "voltar"], "pt"
)


def normalise(text: str) -> str:
    """Lower case, no accents, no punctuation: 'No más mensajes!' -> 'no mas mensajes'."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z ]+", "", plain).strip()


def consent_keyword(text: str | None) -> consent.Status | None:
    """'opted_out' or 'opted_in' when the whole message is a STOP or START keyword."""
    if not text:
        return None
    words = normalise(text)
    if words in STOP_WORDS:
        return "opted_out"
    if words in START_WORDS:
        return "opted_in"
    return None


class DeliveryEvents:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.status_writer = statuses.StatusWriter(deps.pool)
        self.connections = ConnectionsByOrg(deps.pool)  # its settings name the staff phones
        self.evidence = SendEvidence(deps)

    async def on_status(self, event: StatusEvent, delivery: Delivery) -> Outcome | None:
        deps = self.deps
        applied = await self.status_writer.apply(
            org=event.org,
            provider_id=event.provider_id,
            gs_id=event.gs_id,
            status=event.status,
            at_ms=event.at_ms,
            code=event.code,
            reason=event.reason,
        )
        if applied is None:
            young = deps.now_ms() - event.at_ms < UNMATCHED_GRACE_MS
            last_try = not (young and delivery.attempt < deps.settings.retry_attempts)
            if last_try:
                # Perhaps a send still waiting for its answer, which may go in doubt later and
                # then look here. Kept before looking for a doubt below: a send that goes in
                # doubt meanwhile sees one or the other.
                await self.evidence.keep(event)
            if await self.evidence.from_status(event):
                # It named a send in doubt, which now has its Gupshup id.
                applied = await self.status_writer.apply(
                    org=event.org,
                    provider_id=event.provider_id,
                    gs_id=event.gs_id,
                    status=event.status,
                    at_ms=event.at_ms,
                    code=event.code,
                    reason=event.reason,
                )
            elif not last_try:
                raise Retry(f"no outgoing message matches {event.gs_id or event.provider_id} yet")
        if applied is None:
            metrics.status_events.labels(metrics.status_label(event.status), "unmatched").inc()
            return Outcome.UNMATCHED
        metrics.status_events.labels(metrics.status_label(event.status), "applied").inc()
        if event.status == "failed":
            await self._on_failure(event, applied)
        return None

    async def _on_failure(self, event: StatusEvent, applied: statuses.Applied) -> None:
        deps = self.deps
        metrics.send_failures.labels(event.org, metrics.failure_code_label(event.code)).inc()
        log.warning(
            "message %s to %s failed: code=%s reason=%r",
            applied.message_id,
            applied.phone,
            event.code,
            event.reason,
        )
        if event.code == API_RATE_LIMITED:
            await ratelimit.cool_down(deps.redis, event.org, deps.settings.cooldown_ms)
            return
        if event.code in (NUMBER_OPTED_OUT, MARKETING_STOPPED):
            identity = await chats.find_identity(deps.pool, event.org, applied.phone)
            if identity is None or identity.contact_id is None:
                return  # a staff chat: staff are not contacts with a consent
            channel = (
                consent.WHATSAPP if event.code == NUMBER_OPTED_OUT else consent.WHATSAPP_MARKETING
            )
            await consent.record(
                deps.pool,
                org=event.org,
                contact_id=identity.contact_id,
                status="opted_out",
                source=f"provider_error_{event.code}",
                detail=event.reason,
                channel=channel,
            )

    async def on_user_event(self, event: UserEvent, delivery: Delivery) -> Outcome | None:
        if event.event not in ("opted-in", "opted-out"):
            return Outcome.IGNORED
        connection = await self.connections.get(event.org)
        if connection is not None and event.phone in staff_phones(connection.settings):
            return Outcome.IGNORED_STAFF  # the clinic's own people are not contacts with a consent
        identity = await chats.upsert_identity(self.deps.pool, event.org, event.phone, None)
        await consent.record(
            self.deps.pool,
            org=event.org,
            contact_id=identity.customer_contact_id(),
            status="opted_in" if event.event == "opted-in" else "opted_out",
            source="user_event",
        )
        return None

    async def _confirmation(self, org: str, phone: str, status: str, keyword: str | None) -> str:
        """The confirmation in the chat's language; a chat without one yet: the keyword's if it
        has its own ("STOP"), else the organization's."""
        lang = await chats.language_by_phone(self.deps.pool, org, phone)
        if lang is None:
            lang = _KEYWORD_LANGUAGE.get(normalise(keyword or ""))
        if lang is None:
            connection = await self.connections.get(org)
            lang = org_settings.default_language(connection.settings if connection else {})
        return i18n.text("system.opt_out" if status == "opted_out" else "system.opt_in", lang)

    async def on_keyword(
        self,
        *,
        org: str,
        phone: str,
        contact_id: str,
        provider_id: str,
        status: consent.Status,
        keyword: str | None = None,
    ) -> None:
        """A STOP or START message: record it and confirm once (not again if nothing changed).

        The keyword message's id is kept as the consent's detail: a redelivery of that same
        message (its worker died before the confirmation was queued) confirms again, and the
        sender's idempotency key makes that one message.
        """
        previous = await consent.record(
            self.deps.pool,
            org=org,
            contact_id=contact_id,
            status=status,
            source="keyword",
            detail=provider_id,
        )
        # Unchanged, and not a redelivery of the message that set it: no confirmation again.
        if previous is not None and previous[0] == status and previous[1] != provider_id:
            return
        text = await self._confirmation(org, phone, status, keyword)
        await streams.publish(
            self.deps.redis,
            OutboundMessage(
                org=org,
                phone=phone,
                text=text,
                idempotency_key=f"consent:{provider_id}",
                purpose="opt_out_confirmation" if status == "opted_out" else "opt_in_confirmation",
                requires_bot_enabled=False,
            ),
            Stream.OUTBOUND,
        )
