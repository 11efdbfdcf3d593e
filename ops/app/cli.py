"""`skytide`: parse the command line, refuse a configuration that cannot work (one line per
variable, no traceback), then hand the command to its module in ops/app/."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Protocol, cast

from pydantic import ValidationError

from ops import tracing
from ops.app.parser import build_parser, roles_of
from ops.embedded import ServiceError
from ops.logs import setup_logging
from ops.settings import ConfigError, Settings, invalid_lines, startup_problems

# Each command's module, imported when that command runs: `skytide run --roles ingress` must
# not load the model clients and LangGraph that `eval`, `contact` or `embed` need (seconds of
# start-up an ingress restarted mid-outage does not have).
COMMANDS = {
    "run": "ops.app.commands_run",
    "migrate": "ops.app.commands_run",
    "seed-demo": "ops.app.commands_run",
    "org": "ops.app.commands_org",
    "catalog": "ops.app.commands_org",
    "embed": "ops.app.commands_org",
    "reminders": "ops.app.commands_org",
    "operator": "ops.app.commands_staff",
    "webhook": "ops.app.commands_staff",
    "bot": "ops.app.commands_staff",
    "dlq": "ops.app.commands_support",
    "clock": "ops.app.commands_support",
    "eval": "ops.app.commands_support",
    "contact": "ops.app.commands_contact",
}


class CommandModule(Protocol):
    def run(self, settings: Settings, args: argparse.Namespace) -> int: ...


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        return refuse(invalid_lines(exc))
    # A configuration that cannot work stops here, one line per variable and no traceback:
    # the operator reads the fix, not our call stack.
    if problems := (
        startup_problems(settings, roles_of(args))
        + exposure_problems(settings, roles_of(args))
        + pool_problems(settings)
    ):
        return refuse(problems)
    setup_logging(settings.log_level, settings.log_format)
    tracing.setup(settings)
    try:
        command = cast(CommandModule, importlib.import_module(COMMANDS[args.command]))
        return command.run(settings, args)
    except (ConfigError, ServiceError) as exc:
        return refuse([str(exc)])
    finally:
        tracing.shutdown()  # the spans still buffered go out


def exposure_problems(settings: Settings, roles: tuple[str, ...]) -> list[str]:
    """Production never serves /metrics and /readyz on the public webhook port: they say which
    dependency is down and how much traffic each tenant has. The ingress serves them on
    METRICS_PORT, which compose.yaml does not publish."""
    if "ingress" not in roles:
        return []
    if settings.metrics_port and settings.metrics_port == settings.http_port:
        return [
            f"METRICS_PORT={settings.metrics_port} is HTTP_PORT: /metrics and /readyz need "
            "a port of their own, not the public webhook port"
        ]
    if not settings.metrics_port and not settings.development:
        return [
            "METRICS_PORT is not set: production serves the ingress's /metrics and /readyz "
            "there (unpublished), never on the public HTTP_PORT"
        ]
    return []


def pool_problems(settings: Settings) -> list[str]:
    if settings.database_pool_min > settings.database_pool_max:
        return [
            f"DATABASE_POOL_MIN={settings.database_pool_min} is more than "
            f"DATABASE_POOL_MAX={settings.database_pool_max}"
        ]
    return []


def refuse(lines: list[str]) -> int:
    for line in lines:
        print(f"skytide: {line}", file=sys.stderr)
    return 2
