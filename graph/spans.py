"""Each graph node runs inside a trace span, so a turn's trace shows which nodes ran and for how
long (Pydantic AI's model and tool spans nest inside them), and is noted in the turn's context
(TurnContext.nodes_run: which expert handled the turn, shown on the chat page)."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, ParamSpec, TypeVar

from ops import tracing


P = ParamSpec("P")
R = TypeVar("R")


def traced(name: str, node: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """The node, run inside a span named `node <name>`. functools.wraps keeps the signature
    LangGraph reads to decide which arguments (state, runtime) to pass."""

    @functools.wraps(node)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        runtime: Any = kwargs.get("runtime")  # LangGraph's Runtime[TurnContext], when passed
        if runtime is not None:
            runtime.context.nodes_run.append(name)
        with tracing.span(f"node {name}", node=name):
            return await node(*args, **kwargs)

    return run
