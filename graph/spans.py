"""A trace span around each graph node, so a turn's trace shows which nodes ran and for how
long (the model and tool spans of Pydantic AI nest inside them). No-op when tracing is off."""

from __future__ import annotations

import functools

from ops import tracing


def traced(name: str, node):
    """The node, run inside a span named `node <name>`. functools.wraps keeps the signature
    LangGraph reads to decide which arguments (state, runtime) to pass."""
    @functools.wraps(node)
    async def run(*args, **kwargs):
        with tracing.span(f"node {name}", node=name):
            return await node(*args, **kwargs)
    return run
