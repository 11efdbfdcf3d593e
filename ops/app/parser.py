"""The `skytide` command line: every command, sub-command and option (`skytide --help`).

skytide run [--roles ingress,enrich,batcher,agent,sender,scheduler]
skytide migrate | seed-demo | org add|set|token ... | catalog import|export ... | embed
skytide bot pause|resume ... | reminders plan ... | dlq list|show|replay|unknown ...
skytide operator add|revoke|list ... | webhook add|list|remove ... | contact export|erase ...
skytide clock show|advance|reset | eval
"""

from __future__ import annotations

import argparse
import uuid

from ops.settings import ALL_ROLES
from storage.keys import Stage

DESCRIPTION = "The `skytide` command: runs the agent's roles and manages its organizations."


def roles_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The roles a command runs (what it needs configured); none but `run` runs any."""
    if args.command != "run":
        return ()
    return tuple(r.strip() for r in args.roles.split(",") if r.strip())


def org_id(text: str) -> str:
    """An organization id as `org add` printed it (a UUID)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an organization id (a UUID, as `org add` and `seed-demo` print it)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skytide", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the given roles (all by default)")
    run.add_argument(
        "--roles",
        default=",".join(ALL_ROLES),
        help=f"comma-separated subset of {','.join(ALL_ROLES)}",
    )
    run.add_argument("--seed-demo", action="store_true", help="seed the demo clinic first")
    sub.add_parser("migrate", help="apply pending migrations (safe to run twice)")
    sub.add_parser("seed-demo", help="seed the demo clinic (app DemoClinic)")
    org = sub.add_parser("org", help="manage organizations").add_subparsers(
        dest="org_command", required=True
    )
    add = org.add_parser("add", help="provision an organization and its Gupshup connection")
    add.add_argument("--name", required=True)
    add.add_argument("--gupshup-app", required=True)
    add.add_argument("--gupshup-api-key", required=True)
    add.add_argument("--source-phone", required=True)
    add.add_argument(
        "--webhook-token",
        default=None,
        help="at least 12 characters; a random one is generated and printed if absent",
    )
    add.add_argument("--gupshup-app-id", default=None, help="needed for v3 (Meta format) callbacks")
    add.add_argument("--timezone", default="America/Bogota")
    oset = org.add_parser(
        "set", help="change settings: KEY=VALUE ... (see storage/org_settings.py)"
    )
    oset.add_argument("--org", required=True, type=org_id)
    oset.add_argument("--name", default=None)
    oset.add_argument("--timezone", default=None)
    oset.add_argument("values", nargs="*", metavar="KEY=VALUE")
    cat = sub.add_parser("catalog", help="the catalogue as a YAML file").add_subparsers(
        dest="catalog_command", required=True
    )
    cat_import = cat.add_parser(
        "import", help="create or update services, staff, hours, FAQ (idempotent)"
    )
    cat_import.add_argument("file")
    cat_import.add_argument("--org", required=True, type=org_id)
    cat.add_parser("export", help="print the catalogue as YAML").add_argument(
        "--org", required=True, type=org_id
    )
    org.add_parser(
        "token", help="print an app's webhook token (the callback URL's ?token=)"
    ).add_argument("--gupshup-app", required=True)
    bot = sub.add_parser("bot", help="turn the bot on or off for one chat")
    bot.add_argument("action", choices=["pause", "resume"])
    bot.add_argument("--org", required=True)
    bot.add_argument("--phone", required=True)
    operator = sub.add_parser(
        "operator", help="the clinic's team: tokens for the operator API and /inbox"
    ).add_subparsers(dest="operator_command", required=True)
    op_add = operator.add_parser("add", help="create an operator and print their token (once)")
    op_add.add_argument("--org", required=True, type=org_id)
    op_add.add_argument("--name", required=True, help="shown with their messages: staff:<name>")
    op_revoke = operator.add_parser("revoke", help="revoke an operator's token at once")
    op_revoke.add_argument("--org", required=True, type=org_id)
    op_revoke.add_argument("--id", required=True, help="as `operator list` prints it")
    operator.add_parser("list", help="the organization's operators").add_argument(
        "--org", required=True, type=org_id
    )
    hook = sub.add_parser(
        "webhook", help="the CRM's webhook endpoints (signed events)"
    ).add_subparsers(dest="webhook_command", required=True)
    hook_add = hook.add_parser("add", help="add an endpoint and print its secret (once)")
    hook_add.add_argument("--org", required=True, type=org_id)
    hook_add.add_argument("--url", required=True)
    hook_remove = hook.add_parser("remove", help="stop delivering to an endpoint")
    hook_remove.add_argument("--org", required=True, type=org_id)
    hook_remove.add_argument("--url", default=None)
    hook_remove.add_argument("--id", default=None, help="as `webhook list` prints it")
    hook.add_parser("list", help="the organization's endpoints").add_argument(
        "--org", required=True, type=org_id
    )
    dlq = sub.add_parser("dlq", help="dead letters: why entries failed, and replay").add_subparsers(
        dest="dlq_command", required=True
    )
    for name, help_text in (("list", "list dead letters"), ("replay", "put dead letters back")):
        command = dlq.add_parser(name, help=help_text)
        command.add_argument("--org", default=None)
        command.add_argument("--stage", default=None, choices=[stage.value for stage in Stage])
    dlq.add_parser("show", help="show one dead letter").add_argument("ref", help="ORG/ENTRY_ID")
    dlq.add_parser(
        "unknown", help="replies given up on, still in doubt after SEND_DOUBT_MAX_S"
    ).add_argument("--org", default=None)
    rem = sub.add_parser("reminders", help="reminders for appointments not booked through the bot")
    rem.add_argument("action", choices=["plan"])
    rem.add_argument("--org", required=True, type=org_id)
    clock = sub.add_parser("clock", help="development: move the clock of DEV_CLOCK processes")
    clock.add_argument("action", choices=["show", "advance", "reset"])
    clock.add_argument("duration", nargs="?", help="for advance: 90m, 23h, 2d")
    embed = sub.add_parser("embed", help="embed catalogue entries for the hybrid search")
    embed.add_argument("--org", default=None, help="one organization (default: all)")
    evaluate = sub.add_parser(
        "eval",
        help="play the conversation scenarios k times against the configured "
        "model and print pass^k (creates throwaway organizations: "
        "use the embedded database or a test one)",
    )
    evaluate.add_argument("--k", type=int, default=5, help="runs per scenario (default 5)")
    evaluate.add_argument("--only", default=None, help="only scenarios whose name contains this")
    evaluate.add_argument(
        "--dir", default=None, help="scenario folder (default tests/conversations)"
    )
    evaluate.add_argument(
        "--concurrency", type=int, default=4, help="scenario runs at a time (default 4)"
    )
    add_contact_parser(sub)  # skytide contact export|erase
    return parser


def add_contact_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`skytide contact export|erase --org ORG --phone PHONE`: a patient's data (storage/privacy.py)."""
    contact = sub.add_parser(
        "contact", help="a patient's data: export it, or erase it"
    ).add_subparsers(dest="contact_command", required=True)
    export = contact.add_parser(
        "export", help="print every row and Redis value about one phone as JSON"
    )
    erase = contact.add_parser(
        "erase", help="delete (appointments: anonymise) everything about one phone"
    )
    for command in (export, erase):
        command.add_argument("--org", required=True, type=org_id)
        command.add_argument("--phone", required=True, help="international form, e.g. 573001234567")
    export.add_argument("--out", default=None, help="write the document to this file (mode 600)")
    erase.add_argument(
        "--yes", action="store_true", help="really erase (without it: only show what)"
    )
