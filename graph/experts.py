"""The Pydantic AI agents: the router and the expert nodes' agents, built for one model.
Escalation has no agent: it is a deterministic node (graph/nodes.py)."""

from __future__ import annotations

import time
from typing import TypeVar

from pydantic import BaseModel, Field
from pydantic_ai import Agent, RunContext
from pydantic_ai.models import KnownModelName, Model
from pydantic_ai.settings import ModelSettings
from pydantic_ai.usage import RunUsage, UsageLimits

from graph import prompts, tools
from graph.state import Flow, ToolDeps
from ops import metrics
from ops.settings import Settings


class Route(BaseModel):
    """A dónde va el mensaje del cliente."""

    flow: Flow = Field(
        description="knowledge (preguntas y saludos), appointment (citas) o "
        "escalation (quiere una persona, está molesto o no podemos ayudar)"
    )


class ExpertReply(BaseModel):
    """Tu respuesta a este turno del cliente."""

    reply: str = Field(
        "",
        description="El mensaje de WhatsApp para el cliente, en su idioma. "
        "Vacío solo si usas handoff.",
    )
    done: bool = Field(
        False,
        description="true cuando terminaste la tarea (pregunta respondida, "
        "cita agendada, cancelada o cambiada)",
    )
    handoff: Flow | None = Field(
        None,
        description="Otro experto que debe atender este mismo "
        "mensaje porque el cliente cambió de tema",
    )


Output = TypeVar("Output")


class Experts:
    def __init__(self, model: Model | KnownModelName | str, settings: Settings) -> None:
        self.limits = UsageLimits(
            request_limit=settings.llm_request_limit, tool_calls_limit=settings.llm_tool_calls_limit
        )
        # On every agent as well as on the model build_model makes: a model handed in (a test's,
        # a benchmark's) is bounded the same way. A structured reply cut off at the limit fails
        # the run (IncompleteToolCall), so the customer gets the apology, never half a JSON.
        bounded = ModelSettings(max_tokens=settings.llm_max_tokens)
        self.router = Agent(
            model,
            deps_type=ToolDeps,
            output_type=Route,
            retries=1,
            instructions=[_base, prompts.ROUTER, _context],
            name="router",
            model_settings=bounded,
        )
        self.knowledge = Agent(
            model,
            deps_type=ToolDeps,
            output_type=ExpertReply,
            retries=2,
            instructions=[_base, prompts.KNOWLEDGE, _context],
            tools=tools.KNOWLEDGE_TOOLS,
            name="knowledge",
            model_settings=bounded,
        )
        self.appointment = Agent(
            model,
            deps_type=ToolDeps,
            output_type=ExpertReply,
            retries=2,
            instructions=[_base, prompts.APPOINTMENT, _context],
            tools=tools.APPOINTMENT_TOOLS,
            name="appointment",
            model_settings=bounded,
        )
        self.summarizer = Agent(
            model,
            output_type=str,
            instructions=prompts.SUMMARY,
            name="summary",
            model_settings=bounded,
        )

    async def run(self, agent: Agent[ToolDeps, Output], prompt: str, deps: ToolDeps) -> Output:
        started = time.monotonic()
        usage = RunUsage()  # filled in as the run goes: a failed run's tokens are counted too
        try:
            result = await agent.run(prompt, deps=deps, usage_limits=self.limits, usage=usage)
        finally:
            model = agent.model
            metrics.record_llm_run(
                deps.settings.llm_prices,
                org=deps.org.id,
                provider=getattr(model, "system", ""),
                model=getattr(model, "model_name", "unknown"),
                agent=agent.name or "agent",
                seconds=time.monotonic() - started,
                requests=usage.requests,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
            )
        deps.usage_tokens.append(result.usage.input_tokens)
        return result.output


# Instructions are functions so they are rendered again before every model request: a tool that
# proposes slots changes the ESTADO line the model reads on its next step. They are async on
# purpose: Pydantic AI runs sync ones in a worker thread, which under hundreds of concurrent
# turns made the thread pool, not the model, the limit.
async def _base(ctx: RunContext[ToolDeps]) -> str:
    return prompts.base(ctx.deps)


async def _context(ctx: RunContext[ToolDeps]) -> str:
    return prompts.context(ctx.deps, ctx.deps.state, ctx.deps.summary)
