"""Each graph node runs inside a trace span, so a turn's trace shows which nodes ran and for how
long (Pydantic AI's model and tool spans nest inside them), and is noted in the turn's context
(TurnContext.nodes_run: which expert handled the turn, shown on the chat page)."""

from __future__ import annotations

import functools

from ops import tracing


def traced(name: str, node):
    """The node, run inside a span named `node <name>`. functools.wraps keeps the signature
    LangGraph reads to decide which arguments (state, runtime) to pass."""

    @functools.wraps(node)
    async def run(*args, **kwargs):
        runtime = kwargs.get("runtime")
        if runtime is not None:
            runtime.context.nodes_run.append(name)
        with tracing.span(f"node {name}", node=name):
            return await node(*args, **kwargs)

    return run
