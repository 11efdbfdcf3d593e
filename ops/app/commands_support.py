"""`skytide dlq`, `clock` and `eval`: why work failed and putting it back, the development
clock, and the receptionist measured on the conversation scenarios."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from graph import scenarios
from graph.checkpoints import open_checkpointer
from graph.receptionist import Receptionist
from ops.app.wiring import open_deps, redis_url, run_async
from ops.deps import Deps
from ops.logs import mask
from ops.settings import Settings
from ops.system import services
from storage import dead_letters
from storage.db import migrate
from storage.keys import DEV_CLOCK_OFFSET
from storage.outbound import unknown_outcomes


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "dlq":
        return run_async(cmd_dlq(settings, args))
    if args.command == "clock":
        return run_async(cmd_clock(settings, args))
    return run_async(cmd_eval(settings, args))


async def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    async with services(settings) as settings, open_deps(settings) as deps:
        if args.dlq_command == "show":
            letter = await dead_letters.get_letter(deps.redis, args.ref)
            if letter is None:
                print(
                    f"no dead letter {args.ref} (expected ORG/ENTRY_ID, see `skytide dlq list`)",
                    file=sys.stderr,
                )
                return 1
            print(json.dumps(asdict(letter), indent=2, ensure_ascii=False))
            return 0
        if args.dlq_command == "unknown":
            return await _print_unknown_outcomes(deps, args.org)
        letters = await dead_letters.list_letters(deps.redis, org=args.org, stage=args.stage)
        if args.dlq_command == "list":
            for letter in letters:
                print(
                    f"{letter.ref}  stage={letter.stage}  deliveries={letter.deliveries}  "
                    f"error={letter.error[:120]}"
                )
            print(f"{len(letters)} dead letter(s)")
            return 0
        replayed = 0
        for letter in letters:
            result = await dead_letters.replay_letter(deps.redis, letter)
            replayed += result.outcome == "put back"
            print(result.line())
        print(f"replayed {replayed} of {len(letters)} dead letter(s)")
        return 0


async def _print_unknown_outcomes(deps: Deps, org: str | None) -> int:
    """Replies still in doubt after SEND_DOUBT_MAX_S (no status event named them and resending
    did not settle it): given up on by the sender, so a person decides."""
    found = await unknown_outcomes(deps.pool, org=org)
    for each in found:
        print(
            f"{each.org}  {mask(each.phone)}  key={each.idempotency_key}  "
            f"started={each.send_started_at:%Y-%m-%d %H:%M:%S}  reason={each.reason[:120]}"
        )
    print(
        f"{len(found)} message(s) with an unknown outcome (not resent: check with the "
        "customer or Gupshup's delivery report before sending again)"
    )
    return 0


async def cmd_clock(settings: Settings, args: argparse.Namespace) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = (args.duration or "0s").strip()
    if args.action == "advance" and (
        text[-1:] not in units or not text[:-1].replace(".", "", 1).isdigit()
    ):
        print(f"{text!r}: expected a duration like 90m, 23h or 2d", file=sys.stderr)
        return 2
    async with services(settings) as settings, open_deps(settings) as deps:
        if args.action == "reset":
            await deps.redis.delete(DEV_CLOCK_OFFSET)
        elif args.action == "advance":
            await deps.redis.incrby(
                DEV_CLOCK_OFFSET, int(float(text[:-1]) * units[text[-1]] * 1000)
            )
        offset_s = int(await deps.redis.get(DEV_CLOCK_OFFSET) or 0) / 1000
        print(
            f"development clock: {offset_s / 3600:+.2f} h (followed by processes running the scheduler role with DEV_CLOCK=true)"
        )
        return 0


async def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    """The conversation scenarios against the configured model (LLM_MODEL, OPENAI_BASE_URL)."""
    folder = Path(args.dir) if args.dir else scenarios.default_folder()
    chosen = [s for s in scenarios.load(folder) if not args.only or args.only in s.name]
    held_out = [
        s for s in scenarios.load(folder / "held_out") if not args.only or args.only in s.name
    ]
    if not chosen and not held_out:
        print(f"no scenario in {folder} matches {args.only!r}", file=sys.stderr)
        return 2
    async with (
        services(settings) as settings,
        open_deps(settings) as deps,
        open_checkpointer(
            redis_url(settings), settings.checkpoint_ttl_min, cluster=settings.redis_cluster
        ) as saver,
    ):
        await migrate(deps.pool)
        deps.clock = (
            scenarios.NOW.timestamp
        )  # the scenarios' dates are relative to a fixed Wednesday
        receptionist = Receptionist(deps, saver)
        print(
            f"{len(chosen)} scenarios and {len(held_out)} held-out x {args.k} runs against "
            f"{settings.llm_model or 'offline'}",
            file=sys.stderr,
        )

        def progress(outcome: scenarios.Outcome) -> None:
            print("." if outcome.passed else "F", end="", file=sys.stderr, flush=True)

        try:
            results = await scenarios.evaluate(
                deps, receptionist, chosen, args.k, args.concurrency, progress
            )
            held = await scenarios.evaluate(
                deps, receptionist, held_out, args.k, args.concurrency, progress
            )
        finally:
            await receptionist.aclose()
        print(file=sys.stderr)
        print(scenarios.table({**results, **held}, args.k))
        print(scenarios.generalisation(folder, results, held, chosen + held_out))
        return 0 if all(o.passed for outs in results.values() for o in outs) else 1
