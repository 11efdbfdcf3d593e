"""The two roles that load model clients: enrich (Gemini reads media and voice notes) and agent
(the LangGraph receptionist). Their libraries take most of a process's start-up time, so
ops/app/wiring.py imports this module only in a process that runs one of them."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any, Callable

from consumers.agent import AgentStage
from consumers.enrich import EnrichStage
from consumers.runtime import StageWorker
from consumers.understanding import build_understander
from graph.checkpoints import open_checkpointer
from graph.receptionist import build_receptionist
from ops.app.wiring import redis_url, stage_config
from storage.keys import Stage
from ops.deps import Deps


async def workers(
    stack: AsyncExitStack,
    deps: Deps,
    roles: tuple[str, ...],
    consumer: str,
    receptionist_builder: Callable[[Deps, Any], Any] | None = None,
) -> list[StageWorker]:
    """The enrich and agent workers among `roles`; what they hold is closed by `stack` after
    the workers stopped."""
    settings = deps.settings
    found = []
    if "enrich" in roles:
        understander = build_understander(deps)
        if hasattr(understander, "aclose"):
            stack.push_async_callback(understander.aclose)
        enrich = EnrichStage(deps, understander=understander)
        found.append(
            StageWorker(
                deps.redis,
                stage_config(settings, Stage.ENRICH),
                enrich.handle,
                consumer,
                on_dead_letter=enrich.dead_lettered,
                outages=deps.outages,
            )
        )
    if "agent" in roles:
        saver = await stack.enter_async_context(
            open_checkpointer(
                redis_url(settings), settings.checkpoint_ttl_min, cluster=settings.redis_cluster
            )
        )
        receptionist = (receptionist_builder or build_receptionist)(deps, saver)
        if hasattr(receptionist, "aclose"):
            stack.push_async_callback(receptionist.aclose)
        agent = AgentStage(deps, receptionist)
        found.append(
            StageWorker(
                deps.redis,
                stage_config(settings, Stage.AGENT),
                agent.handle,
                consumer,
                on_dead_letter=agent.dead_lettered,
                outages=deps.outages,
            )
        )
    return found
