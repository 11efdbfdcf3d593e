"""The conversation graph (placeholder until the router and expert nodes land).

A minimal LangGraph graph whose state persists per chat through the Redis checkpointer, answered
by a deterministic offline model so the whole pipeline runs without keys.
"""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph

RECURSION_LIMIT = 25


class ConversationState(TypedDict, total=False):
    inbound: list[str]  # this turn's messages, in the order the user sent them
    history: Annotated[list[str], operator.add]
    turns: int
    replies: list[str]


def offline_reply(texts: list[str], turn_number: int) -> str:
    """The deterministic offline model: acknowledges what was said, in Spanish."""
    said = " / ".join(t.strip() for t in texts if t.strip()) or "(mensaje vacío)"
    greeting = "¡Hola! Soy el asistente virtual. " if turn_number == 1 else ""
    return f"{greeting}Recibí tu mensaje: «{said}». En un momento te ayudo."


async def respond(state: ConversationState) -> ConversationState:
    turn_number = state.get("turns", 0) + 1
    texts = state.get("inbound", [])
    return {"turns": turn_number, "history": texts, "replies": [offline_reply(texts, turn_number)]}


def build_graph(checkpointer):
    builder = StateGraph(ConversationState)
    builder.add_node("respond", respond)
    builder.add_edge(START, "respond")
    builder.add_edge("respond", END)
    return builder.compile(checkpointer=checkpointer)


async def run_turn(graph, thread_id: str, texts: list[str]) -> list[str]:
    config = {"configurable": {"thread_id": thread_id}, "recursion_limit": RECURSION_LIMIT}
    state = await graph.ainvoke({"inbound": texts}, config=config)
    return list(state.get("replies", []))
