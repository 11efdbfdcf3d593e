"""The LangGraph graph: the router runs only when no expert owns the conversation; an expert
keeps it across turns until its task is done, and may hand this same message to another
expert when the customer really changed the subject (at most MAX_HOPS times per turn).

START -> replay (a redelivered turn) | router | <the expert that owns the chat>
router -> <expert>;  expert -> <other expert> (hand-off) | END

Each node step costs LangGraph time on every turn, so the turn's bookkeeping (reply parts,
turn count, the summary) is done by the expert that ends the turn, not by a node of its own.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Checkpointer
from pydantic_ai import Agent
from pydantic_ai.exceptions import UnexpectedModelBehavior

from graph import i18n, intents, loopguard, replies
from graph.experts import ExpertReply, Experts
from graph.spans import traced
from graph.state import TOOL_KEYS, ConversationState, ToolDeps, TurnContext
from ops import metrics
from storage import holds

log = logging.getLogger(__name__)

MAX_HOPS = 2
Next = Literal["router", "knowledge", "appointment", "escalation", "replay"]


class Nodes:
    def __init__(self, experts: Experts, summary_every_turns: int, router_keywords: bool) -> None:
        self.experts = experts
        self.summary_every_turns = summary_every_turns
        self.router_keywords = router_keywords

    # The edges' functions are async: LangGraph runs a sync one in a worker thread, a thread-pool
    # round trip per edge and turn (about 1 ms of CPU a turn in bench.mix).
    @staticmethod
    async def entry(state: ConversationState) -> Next:
        last = state.get("last_turn")
        if last and last.get("turn_id") == state.get("turn_id"):
            return "replay"
        picked = loopguard.resolve(state, state.get("texts", []))
        if picked and picked.get("person"):
            return "escalation"  # "hablar con una persona" picked from a menu we showed
        if picked and (state.get("last_list") or {}).get("kind") == "menu":
            return "router"  # a fresh task, in our own words ("quiero cancelar mi cita")
        return state.get("flow") or "router"

    async def replay(self, state: ConversationState) -> dict[str, Any]:
        # A redelivered turn whose effects are already in this state: answer the same again.
        last = state["last_turn"]
        assert last is not None  # entry() routes here only when last_turn is this turn's
        return {
            "replies": last["replies"],
            "actions": last["actions"],
            "escalation": last["escalation"],
            "handoff": None,
        }

    async def router(
        self, state: ConversationState, runtime: Runtime[TurnContext]
    ) -> dict[str, Any]:
        prompt = _prompt(state)
        flow = intents.clear_flow(prompt) if self.router_keywords else None
        by = "keywords"
        if flow is None:
            by = "model"
            try:
                flow = (
                    await self.experts.run(self.experts.router, prompt, self._deps(state, runtime))
                ).flow
            except UnexpectedModelBehavior as exc:
                # The model's output failed validation twice: a question is the safe default.
                log.warning("router output invalid, defaulting to knowledge: %s", exc)
                flow = "knowledge"
        routed = {"action": "routed", "data": {"flow": flow, "by": by}}
        return {"flow": flow, "actions": state.get("actions", []) + [routed]}

    @staticmethod
    async def after_router(state: ConversationState) -> Next:
        return state.get("flow") or "knowledge"

    async def knowledge(
        self, state: ConversationState, runtime: Runtime[TurnContext]
    ) -> dict[str, Any]:
        return await self._expert("knowledge", self.experts.knowledge, state, runtime)

    async def appointment(
        self, state: ConversationState, runtime: Runtime[TurnContext]
    ) -> dict[str, Any]:
        return await self._expert("appointment", self.experts.appointment, state, runtime)

    async def _expert(
        self,
        name: Literal["knowledge", "appointment"],
        agent: Agent[ToolDeps, ExpertReply],
        state: ConversationState,
        runtime: Runtime[TurnContext],
    ) -> dict[str, Any]:
        deps = self._deps(state, runtime)
        out = await self.experts.run(agent, _prompt(state), deps)
        if name == "appointment":
            await _release_declined_holds(state, deps, out.done, runtime.context)
        # Only the keys a tool changed: every written channel costs LangGraph work and checkpoint space.
        changed = {k: v for k, v in deps.state.items() if v != state.get(k)}
        update = {
            **changed,
            "bookings": deps.bookings,
            "actions": state.get("actions", []) + deps.actions,
        }
        hops = state.get("hops", 0)
        if out.handoff and out.handoff != name and hops < MAX_HOPS:
            # A cancellation asked about here was never seen by the customer: it cannot be confirmed.
            update.update(flow=out.handoff, handoff=out.handoff, hops=hops + 1, cancel_pending=None)
            update["actions"] = update["actions"] + [
                {"action": "handoff", "data": {"from": name, "to": out.handoff}}
            ]
            return update
        update.update(
            flow=None if out.done else name,
            handoff=None,
            replies=state.get("replies", []) + ([out.reply] if out.reply.strip() else []),
        )
        if out.done:  # the task is over: a later "sí" must not confirm a cancellation from it
            update["cancel_pending"] = None
        return await self._end_turn(state, update, runtime.context)

    async def escalation(
        self, state: ConversationState, runtime: Runtime[TurnContext]
    ) -> dict[str, Any]:
        """Deterministic on purpose: a customer who asks for a person gets one even when the
        model is down, and the advisor's note cannot be made up."""
        said = _prompt(state, resolved=False)
        reason = intents.escalation_reason(intents.normalize(said))
        if (state.get("last_list") or {}).get("kind") == "menu" and loopguard.resolve(
            state, state.get("texts", [])
        ):
            reason = "Eligió hablar con una persona"
        full_name = (state.get("contact_name") or runtime.context.contact_name or "").split()
        request = {
            "reason": reason[:200],
            "summary": _advisor_summary(state, said)[:500],
            "accepted_text": i18n.text("system.escalation_accepted"),  # the customer's language
            "failed_text": i18n.text("system.escalation_failed"),
            "customer_name": full_name[0] if full_name else "Cliente",
        }
        action = {
            "action": "escalate",
            "data": {"reason": request["reason"], "summary": request["summary"]},
        }
        update = {
            "escalation": request,
            "flow": None,
            "handoff": None,
            "replies": [],
            "last_list": None,
            "actions": state.get("actions", []) + [action],
        }
        return await self._end_turn(state, update, runtime.context)

    @staticmethod
    async def after_expert(state: ConversationState) -> Next | str:
        return state.get("handoff") or END

    async def _end_turn(
        self, state: ConversationState, update: dict[str, Any], ctx: TurnContext
    ) -> dict[str, Any]:
        """The last expert's update plus the turn's bookkeeping: the replies cut to WhatsApp's
        size, the turn counted and remembered (for a redelivery), the summary every K turns."""
        parts = [p for r in update["replies"] for p in replies.split(r)]
        previous = (state.get("last_turn") or {}).get("replies")
        stuck = not loopguard.progressed(state, update) and (
            loopguard.repeats(previous, parts) or loopguard.missed_again(state, parts)
        )
        # The very same words while the task goes on: whatever moved in the state, the customer
        # reads the same message and cannot tell; a finished task's are only said differently.
        going_on = update.get("flow") is not None
        if parts and (stuck or (going_on and loopguard.same_words(previous, parts))):
            # The same question or list again: the customer's message was not understood.
            flow = update.get("flow") or state.get("flow") or "none"
            metrics.loop_guard.labels(flow).inc()
            log.info("loop guard: %s repeated its question; offering options", flow)
            text, menu = loopguard.guard_reply(
                {**state, **update},
                parts,
                after_menu=(state.get("last_list") or {}).get("kind") == "menu",
            )
            parts = replies.split(text)
            update["last_list"] = menu
            update["actions"] = update["actions"] + [
                {"action": "loop_guarded", "data": {"flow": flow}}
            ]
        if loopguard.same_words(
            previous, parts
        ):  # a second goodbye, or the guard's own words again
            parts = loopguard.said_again(parts)
            update["actions"] = update["actions"] + [{"action": "said_again", "data": {}}]
        turns = state.get("turns", 0) + 1
        pending = update.get("cancel_pending", state.get("cancel_pending"))
        if pending and pending.get("turn_id") != state.get("turn_id"):
            # A cancellation question is answered by the customer's next message or not at all:
            # "¿dónde quedan?" then "ok gracias" must not confirm it two messages later.
            update["cancel_pending"] = None
        update.update(
            replies=parts,
            turns=turns,
            last_turn={
                "turn_id": state.get("turn_id"),
                "replies": parts,
                "actions": update["actions"],
                "escalation": update.get("escalation", state.get("escalation")),
            },
        )
        if self.summary_every_turns and turns % self.summary_every_turns == 0:
            summary = await self._summarize(state, parts, ctx)
            if summary:
                update["summary"] = summary
        return update

    async def _summarize(
        self, state: ConversationState, parts: list[str], ctx: TurnContext
    ) -> str | None:
        from storage.memory import save_summary

        lines = [f"Resumen anterior: {ctx.summary or state.get('summary') or '(ninguno)'}"]
        speaker = {"user": "Cliente", "staff": "Equipo de la clínica"}
        lines += [f"{speaker.get(r, 'Nosotros')}: {t[:300]}" for r, t in ctx.recent]
        lines += [f"Cliente: {t[:300]}" for t in state.get("texts", [])]
        lines += [f"Nosotros: {t[:300]}" for t in parts]
        try:
            summary = (
                await self.experts.summarizer.run(
                    "\n".join(lines), usage_limits=self.experts.limits
                )
            ).output
        except UnexpectedModelBehavior as exc:
            log.warning("summary not refreshed: %s", exc)
            return None
        summary = summary.strip()[:1500]
        await save_summary(
            ctx.deps.pool, ctx.turn.org, ctx.turn.identity_id, summary, state.get("turns", 0) + 1
        )
        return summary

    @staticmethod
    def _deps(state: ConversationState, runtime: Runtime[TurnContext]) -> ToolDeps:
        return ToolDeps.for_turn(
            runtime.context,
            state={k: state.get(k) for k in TOOL_KEYS},
            summary=runtime.context.summary or state.get("summary", ""),
            bookings=state.get("bookings", 0),
        )


async def _release_declined_holds(
    state: ConversationState, deps: ToolDeps, done: bool, ctx: TurnContext
) -> None:
    """Held slots end when the task does, and at a "no" the slots declined are let go (a new
    offer in the same turn keeps only the slots it did not offer before)."""
    declined = any(intents.says_no(intents.normalize(t)) for t in state.get("texts", [])) and all(
        a["action"] == "slots_proposed" for a in deps.actions
    )  # "no sé, la 1" picks
    if not (done or (declined and state.get("proposed_slots"))):
        return
    before = {(s["staff_id"], s["starts_at"]) for s in state.get("proposed_slots") or []}
    duration = timedelta(minutes=(deps.state.get("service") or {}).get("duration_minutes") or 0)
    keep = (
        []
        if done
        else [
            (s["staff_id"], datetime.fromisoformat(s["starts_at"]))
            for s in deps.state.get("proposed_slots") or []
            if (s["staff_id"], s["starts_at"]) not in before
        ]
    )
    await holds.hold(
        ctx.deps.redis,
        ctx.turn.org,
        ctx.turn.chat,
        [(st, a, a + duration) for st, a in keep],
        now_ms=ctx.deps.now_ms(),
        ttl_ms=ctx.deps.settings.slot_hold_min * 60_000,
    )


def _prompt(state: ConversationState, resolved: bool = True) -> str:
    """The customer's messages of this turn; a number picked from our menu or service list
    becomes what it stands for ("2" -> "Masaje relajante"), so any model reads it right."""
    texts = state.get("texts", [])
    picked = loopguard.resolve(state, texts) if resolved else None
    say: str | None = picked.get("say") if picked else None
    if say:
        return say
    return "\n".join(t for t in texts if t.strip()) or "(mensaje vacío)"


def _advisor_summary(state: ConversationState, said: str) -> str:
    """What the advisor needs in two lines, from the state (never from a model)."""
    known = []
    if service := state.get("service"):
        known.append(f"servicio: {service['name']}")
    if window := state.get("window"):
        known.append(f"cuándo: {window}")
    if state.get("purpose") in ("cancelar", "reprogramar"):
        known.append(f"quería {state['purpose']} una cita")
    tail = f" ({'; '.join(known)})" if known else ""
    return f"Último mensaje: «{said.strip()[:300] or 'sin texto'}»{tail}"


def build_graph(
    experts: Experts,
    checkpointer: Checkpointer,
    summary_every_turns: int = 8,
    router_keywords: bool = True,
) -> CompiledStateGraph[ConversationState, TurnContext, ConversationState, ConversationState]:
    nodes = Nodes(experts, summary_every_turns, router_keywords)
    builder = StateGraph(ConversationState, context_schema=TurnContext)
    for name in ("replay", "router", "knowledge", "appointment", "escalation"):
        builder.add_node(name, traced(name, getattr(nodes, name)))
    builder.add_conditional_edges(START, nodes.entry)
    builder.add_edge("replay", END)
    builder.add_conditional_edges("router", nodes.after_router)
    for expert in ("knowledge", "appointment", "escalation"):
        builder.add_conditional_edges(expert, nodes.after_expert)
    return builder.compile(checkpointer=checkpointer)
