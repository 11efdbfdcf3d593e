"""The receptionist: one turn of one chat through the conversation graph.

The agent stage builds one Receptionist per process (build_receptionist) and calls run_turn
under the chat's lease. The graph's state is checkpointed per chat (thread_id
storage.keys.checkpoint_thread) so the flow, the chosen service and the offered slots survive
a worker restart. A model that fails on the turn never raises: the customer gets a short apology, the
failure is logged and counted; a model server that is down or throttling raises DependencyDown,
so the turn waits for it.

The turn is answered in the customer's language (graph/language.py: what they wrote, else the
chat's language so far, else the organization's `locale`); every text the system writes itself
comes from the message catalogs in that language (graph/i18n.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Sequence

from langgraph.types import Checkpointer
from pydantic_ai.exceptions import (
    AgentRunError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelServerError,
    ModelUnavailableError,
)
from pydantic_ai.models import Model

from graph.embeddings import Embedder, build_embedder
from graph.contract import EscalationRequest, TurnInput, TurnResult
from graph.experts import Experts
from graph.models import build_model
from graph import i18n, language, loopguard, nodes, reminder_answers, safety
from graph.state import ConversationState, TurnContext
from ops import logs, metrics
from ops.deps import Deps
from ops.outages import Dependency, DependencyDown
from storage import catalog, chats, keys, memory

if TYPE_CHECKING:  # LangGraph's config type, defined by its langchain-core dependency
    from langchain_core.runnables import RunnableConfig

log = logging.getLogger(__name__)

RECURSION_LIMIT = 25
EXPERT_NODES = ("knowledge", "appointment", "escalation")
_MODEL_DOWN = (ModelConnectionError, ModelRateLimitError, ModelServerError, ModelUnavailableError)
# The texts in Spanish, for the tests; a turn says them in its own language (system.apology).
APOLOGY = i18n.text("system.apology", "es")
# The model failed again right after the apology: not the same words twice (graph/loopguard.py),
# and a way to a person that needs no model (the keyword router sends "asesor" to escalation).
APOLOGY_AGAIN = i18n.text("system.apology_again", "es")


class Receptionist:
    def __init__(
        self,
        deps: Deps,
        checkpointer: Checkpointer,
        model: Model | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.deps = deps
        self.model = model if model is not None else build_model(deps.settings)
        self.embedder = embedder if embedder is not None else build_embedder(deps.settings)
        self.experts = Experts(self.model, deps.settings)
        self.graph = nodes.build_graph(
            self.experts,
            checkpointer,
            deps.settings.summary_every_turns,
            deps.settings.router_keywords,
        )
        self._orgs: dict[str, catalog.OrgProfile] = {}

    async def aclose(self) -> None:
        """Close the model's and the embedder's HTTP connections (the offline model has none)."""
        for client in (getattr(self.model, "client", None), getattr(self.embedder, "client", None)):
            if client is not None:
                await client.close()

    async def run_turn(self, turn: TurnInput) -> TurnResult:
        thread = keys.checkpoint_thread(turn.org, turn.chat)
        with logs.bound(thread_id=thread):
            context = await self._context(turn)
            with i18n.speaking(context.language):
                return await self._run_turn(turn, thread, context)

    async def _run_turn(self, turn: TurnInput, thread: str, context: TurnContext) -> TurnResult:
        config: RunnableConfig = {
            "configurable": {"thread_id": thread},
            "recursion_limit": RECURSION_LIMIT,
        }
        log.info(
            "turn %s context: thread=%s messages=%d approx_tokens=%d summary_used=%s",
            turn.turn_id,
            thread,
            len(context.recent),
            approx_tokens(context),
            bool(context.summary),
        )
        if safety.is_emergency(turn.texts):
            return _emergency(turn, context)
        turn_input: ConversationState = {
            "texts": list(turn.texts),
            "turn_id": turn.turn_id,
            "replies": [],
            "actions": [],
            "escalation": None,
            "hops": 0,
            "handoff": None,
            "bookings": 0,
        }
        # A reminder's button: Confirmar is done here; the others enter the appointment expert
        # with that appointment in its state.
        answered = await reminder_answers.reminder_answer(self.deps, turn, context.org)
        if answered and answered["answer"] == "confirm":
            confirmed = await reminder_answers.confirm(self.deps, turn, answered)
            # Outside the graph, so the loop guard is applied here: a second tap on Confirmar.
            last_sent = _last_sent(context)
            if last_sent is not None and loopguard.same_words([last_sent], confirmed.replies):
                return dataclasses.replace(
                    confirmed, replies=loopguard.said_again(confirmed.replies)
                )
            return confirmed
        if answered:
            turn_input.update(reminder_answers.state_for(answered, turn.org))
        if context.contact_name:  # the CRM's name wins over what an earlier turn remembered
            turn_input["contact_name"] = context.contact_name
        try:
            async with asyncio.timeout(self.deps.settings.llm_turn_timeout_s):
                # durability="exit": one checkpoint write per turn instead of one per node. A
                # crash mid-turn loses only that turn's progress; the turn is redelivered and
                # its booking keys make the replay safe.
                state = await self.graph.ainvoke(
                    turn_input, config, context=context, durability="exit"
                )
        except _MODEL_DOWN as exc:
            # The model server is down or throttling: the turn waits for it (the runtime retries
            # it without using up its attempts) instead of answering with an apology.
            metrics.model_failures.labels(type(exc).__name__).inc()
            raise DependencyDown(Dependency.MODEL, f"{type(exc).__name__}: {exc}") from exc
        except (AgentRunError, TimeoutError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__
            metrics.model_failures.labels(reason).inc()
            metrics.turns.labels("model_failed").inc()
            log.error(
                "turn %s of %s/%s: model failed (%s): %s",
                turn.turn_id,
                turn.org,
                turn.chat,
                reason,
                exc,
                exc_info=not isinstance(exc, TimeoutError),
            )
            again = _last_sent(context) == i18n.text("system.apology")
            return TurnResult(
                replies=[i18n.text("system.apology_again" if again else "system.apology")],
                actions=[{"action": "model_failed", "data": {"reason": reason}}],
            )
        if context.usage_tokens:
            metrics.prompt_tokens.observe(sum(context.usage_tokens))
        escalation = state.get("escalation")
        result = TurnResult(
            replies=list(state.get("replies", [])),
            escalation=EscalationRequest(**escalation) if escalation else None,
            actions=list(state.get("actions", [])),
            experts=[n for n in context.nodes_run if n in EXPERT_NODES],
            tools=list(context.tools_used),
        )
        log.info(
            "turn %s of %s: flow=%s actions=%s",
            turn.turn_id,
            turn.org,
            state.get("flow"),
            [a["action"] for a in result.actions],
        )
        return result

    async def _context(self, turn: TurnInput) -> TurnContext:
        deps = self.deps
        org = self._orgs.get(turn.org)
        if org is None:
            org = await catalog.org_profile(deps.pool, turn.org)
            if org is None:
                raise LookupError(f"organization {turn.org} does not exist")
            self._orgs[turn.org] = org  # timezone and name change rarely; a restart picks them up
        n = deps.settings.memory_messages
        (
            stored,
            (name, remembered),
            (summary, _),
        ) = await asyncio.gather(  # Redis, PostgreSQL at once
            memory.recent_messages(deps.redis, deps.pool, turn.org, turn.chat, n + len(turn.texts)),
            chats.name_and_language(deps.pool, turn.org, turn.identity_id),
            memory.load_summary(deps.pool, turn.org, turn.identity_id),
        )
        spoken = language.choose(list(turn.texts), remembered, org.settings.get("locale"))
        # Remembered once the customer said it (the reminders are written in it too); a first
        # "ok" answered in the organization's language leaves the chat's open.
        said = remembered is not None or language.detect("\n".join(turn.texts)) == spoken
        if spoken != remembered and said:
            await chats.save_chat_language(deps.pool, turn.org, turn.identity_id, spoken)
        recent = _without_this_turn(stored, turn.texts)[-n:]
        now = datetime.fromtimestamp(deps.clock(), org.tz)
        return TurnContext(
            deps=deps,
            turn=turn,
            org=org,
            now=now,
            recent=recent,
            contact_name=name,
            language=spoken,
            summary=summary,
            embedder=self.embedder,
        )


def _emergency(turn: TurnInput, context: TurnContext) -> TurnResult:
    """Before any model: the emergency line to the customer, the advisor told (graph/safety.py)."""
    metrics.turns.labels("emergency").inc()
    phone = safety.emergency_phone(context.org.settings)
    summary = " / ".join(t for t in turn.texts if t)[:300]
    return TurnResult(
        replies=[safety.emergency_reply(phone)],
        escalation=EscalationRequest(
            reason="posible emergencia médica",  # for the clinic's advisor, in its language
            summary=summary,
            accepted_text=i18n.text("system.emergency_accepted", phone=phone),
            failed_text=i18n.text("system.emergency_failed", phone=phone),
            customer_name=context.contact_name or "Cliente",
        ),
        actions=[{"action": "emergency", "data": {"line": phone}}],
    )


def _last_sent(ctx: TurnContext) -> str | None:
    """What the chat last got from us, if it is the latest message (this turn's excluded)."""
    return ctx.recent[-1][1] if ctx.recent and ctx.recent[-1][0] == "assistant" else None


def approx_tokens(ctx: TurnContext) -> int:
    """The memory's size in the prompt, roughly (4 characters a token), for the logs."""
    chars = (
        len(ctx.summary)
        + sum(len(text) for _, text in ctx.recent)
        + sum(len(t) for t in ctx.turn.texts)
    )
    return chars // 4


def _without_this_turn(
    recent: Sequence[tuple[str, str]], texts: list[str]
) -> list[tuple[str, str]]:
    """The stored history already holds this turn's messages (enrich stored them): drop them."""
    pending = [t for t in texts if t.strip()]
    trimmed = list(recent)
    while pending and trimmed and trimmed[-1] == ("user", pending[-1]):
        trimmed.pop()
        pending.pop()
    return trimmed


def build_receptionist(deps: Deps, checkpointer: Checkpointer) -> Receptionist:
    return Receptionist(deps, checkpointer)
