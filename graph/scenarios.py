"""Multi-turn conversation scenarios, judged by the database and the replies.

A scenario file (TOML, tests/conversations/*.toml) holds scripts of customer lines with what
must come of them. `run_scenario` plays one against a Receptionist in an organization of its
own (the demo clinic's catalogue, a fixed clock), so runs never see each other's bookings, and
judges it: per line, text the reply must or must not contain, an action, an escalation; at the
end, the customer's appointments (service, local date and time, status); throughout, no
reply sent twice in a row and no time of day in a reply that no tool produced.

`make test` plays every scenario with the offline model and a scripted model; `skytide eval`
plays them against whatever model is configured, k times each, and prints pass^k, then how it
generalises (`generalisation`): the pass rates of the rules part (the scenarios and phrasings the
offline model is written against) and of the held-out part (never tuned against), per language.
"""

from __future__ import annotations

import re
import tomllib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import asyncpg

from graph import intents, loopguard, replies
from graph.contract import TurnInput, TurnResult
from graph.receptionist import Receptionist
from ops.deps import Deps
from storage import appointments, catalog, chats, memory
from storage.orgs import add_org
from storage.seed import seed_catalog

TZ = ZoneInfo("America/Bogota")
NOW = datetime(2027, 3, 3, 10, 0, tzinfo=TZ)  # a Wednesday morning: "mañana" is Thursday 4 March
PHONE = "573001112233"
# A time of day as a reply writes it, in any catalog's way: "3:00 p. m.", "3:00 PM", "15:00".
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}(?: [ap]\. m\.| [AP]M)?")


@dataclass(frozen=True)
class Line:
    say: str
    has: tuple[str, ...] = ()  # each must be in the reply (case-insensitive)
    lacks: tuple[str, ...] = ()  # none may be
    action: str | None = None  # an action this turn must record ("booked", "loop_guarded")
    escalated: bool | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    lines: tuple[Line, ...]
    appointments: (
        tuple[dict[str, Any], ...] | None
    )  # the customer's appointments at the end; None: not judged
    before: tuple[
        dict[str, Any], ...
    ] = ()  # appointments booked before the chat: {service, at, name?}
    source: str = ""
    language: str = "es"  # the customer's language, for the per-language rates


@dataclass
class Outcome:
    scenario: str
    failures: list[str] = field(default_factory=list)
    transcript: list[tuple[str, str]] = field(default_factory=list)
    guarded: int = 0  # replies the loop guard replaced

    @property
    def passed(self) -> bool:
        return not self.failures


def default_folder() -> Path:
    """The checkout's tests/conversations, where the code runs from a checkout (`make install`
    installs it editable); else the working directory's, as in the image: its code is installed
    in site-packages and the Dockerfile copies the scenarios to /app/tests/conversations, /app
    being its WORKDIR."""
    beside_the_code = Path(__file__).resolve().parents[1] / "tests" / "conversations"
    if beside_the_code.is_dir():
        return beside_the_code
    return Path.cwd() / "tests" / "conversations"


def load(folder: Path) -> list[Scenario]:
    """Every scenario of every *.toml file in the folder, in file and then script order."""
    found: list[Scenario] = []
    for path in sorted(folder.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for raw in data.get("scenario", []):
            lines = tuple(
                Line(
                    say=item["say"],
                    has=_tuple(item.get("has")),
                    lacks=_tuple(item.get("lacks")),
                    action=item.get("action"),
                    escalated=item.get("escalated"),
                )
                for item in raw["lines"]
            )
            found.append(
                Scenario(
                    name=raw["name"],
                    lines=lines,
                    source=path.name,
                    appointments=tuple(raw["appointments"]) if "appointments" in raw else None,
                    before=tuple(raw.get("before", ())),
                    language=raw.get("language", "es"),
                )
            )
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        raise ValueError(f"scenario names must be unique in {folder}")
    return found


def _tuple(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


async def new_clinic(pool: asyncpg.Pool) -> str:
    """A fresh organization with the demo clinic's catalogue: one per run, nothing shared."""
    tag = uuid.uuid4().hex[:12]
    org = await add_org(
        pool,
        name=f"Clínica de prueba {tag}",
        app_name=f"eval-{tag}",
        api_key=f"eval-{tag}",
        source_phone=f"57{int(tag, 16) % 10**10:010d}",
        timezone=str(TZ),
    )
    await seed_catalog(pool, org)
    return org


async def run_scenario(deps: Deps, receptionist: Receptionist, scenario: Scenario) -> Outcome:
    """Play one scenario in a fresh clinic and judge it. `deps.clock` must read NOW."""
    out = Outcome(scenario.name)
    org = await new_clinic(deps.pool)
    identity = await chats.upsert_identity(deps.pool, org, PHONE, None)
    contact_id = identity.contact_id
    assert contact_id is not None  # a customer's identity always has its contact
    for i, before in enumerate(scenario.before):
        # Booked by this customer, or (`others` = n) by n other customers, to fill a time.
        service = await catalog.find_service(deps.pool, org, before["service"])
        if service is None:
            raise ValueError(f"scenario {scenario.name}: no service like {before['service']!r}")
        starts = datetime.fromisoformat(before["at"]).replace(tzinfo=TZ)
        for j in range(before.get("others", 0) or 1):
            who = (
                identity
                if not before.get("others")
                else await chats.upsert_identity(deps.pool, org, f"5730000000{i}{j}", None)
            )
            assert who.contact_id is not None  # a customer's identity always has its contact
            await appointments.book(
                deps.pool,
                org=org,
                contact_id=who.contact_id,
                service=service,
                starts_at=starts,
                idempotency_key=f"before-{i}-{j}",
                contact_name=before.get("name"),
            )
    known = _known_times(scenario)
    previous: list[str] | None = None
    for n, line in enumerate(scenario.lines, 1):
        await memory.remember(deps.redis, org, PHONE, "user", line.say)
        turn = TurnInput(
            org=org,
            chat=PHONE,
            contact_id=contact_id,
            identity_id=identity.id,
            turn_id=uuid.uuid4().hex,
            texts=[line.say],
        )
        result: TurnResult = await receptionist.run_turn(turn)
        for reply in result.replies:
            await memory.remember(deps.redis, org, PHONE, "assistant", reply)
        text = "\n".join(result.replies) or (
            result.escalation.accepted_text if result.escalation else ""
        )
        out.transcript.append((line.say, text))
        known |= set(_CLOCK.findall(str(result.actions)))
        out.guarded += any(a["action"] == "loop_guarded" for a in result.actions)
        out.failures += _judge_line(n, line, result, text, previous, known)
        previous = result.replies
    if scenario.appointments is not None:
        out.failures += await _judge_appointments(deps.pool, org, contact_id, scenario.appointments)
    return out


def _known_times(scenario: Scenario) -> set[str]:
    times = set()
    for before in scenario.before:
        for lang in ("es", "en", "pt"):
            times.add(replies.clock(datetime.fromisoformat(before["at"]), lang))
    return times


def _same(previous: list[str], now: list[str]) -> bool:
    """The customer sees the same message again, whatever it says (a question, a list, or not)."""
    return loopguard.same_words(previous, now)


def _judge_line(
    n: int, line: Line, result: TurnResult, text: str, previous: list[str] | None, known: set[str]
) -> list[str]:
    failures = []
    low = text.lower()
    for must in line.has:
        if must.lower() not in low:
            failures.append(f"line {n} «{line.say}»: reply lacks «{must}»")
    for must_not in line.lacks:
        if must_not.lower() in low:
            failures.append(f"line {n} «{line.say}»: reply contains «{must_not}»")
    actions = [a["action"] for a in result.actions]
    if line.action and line.action not in actions:
        failures.append(f"line {n} «{line.say}»: no «{line.action}» among {actions}")
    if line.escalated is not None and (result.escalation is not None) != line.escalated:
        failures.append(f"line {n} «{line.say}»: escalated={result.escalation is not None}")
    if result.replies and previous and _same(previous, result.replies):
        failures.append(f"line {n} «{line.say}»: the same reply as the previous one")
    invented = [c for c in _CLOCK.findall(text) if c not in known]
    if invented:
        failures.append(f"line {n} «{line.say}»: times no tool gave: {invented}")
    return failures


async def _judge_appointments(
    pool: asyncpg.Pool, org: str, contact_id: str, expected: tuple[dict[str, Any], ...]
) -> list[str]:
    rows = await pool.fetch(
        "select s.name, a.starts_at, a.status from appointments a join services s on s.id = a.service_id "
        "where a.organization_id = $1::uuid and a.contact_id = $2::uuid order by a.starts_at",
        org,
        contact_id,
    )
    got = [
        {
            "service": r["name"],
            "date": r["starts_at"].astimezone(TZ).date().isoformat(),
            "time": r["starts_at"].astimezone(TZ).strftime("%H:%M"),
            "status": r["status"],
        }
        for r in rows
    ]
    remaining = list(got)
    failures = []
    for want in expected:
        match = next((g for g in remaining if all(g[k] == v for k, v in want.items())), None)
        if match is None:
            failures.append(f"no appointment like {want}")
        else:
            remaining.remove(match)
    if remaining:
        failures.append(f"appointments nobody expected: {remaining}")
    return failures


async def evaluate(
    deps: Deps,
    receptionist: Receptionist,
    scenarios: list[Scenario],
    k: int,
    concurrency: int = 4,
    progress: Callable[[Outcome], None] | None = None,
) -> dict[str, list[Outcome]]:
    """Each scenario k times (a few at a time: a local model server is the bottleneck)."""
    import asyncio

    gate = asyncio.Semaphore(concurrency)
    results: dict[str, list[Outcome]] = {s.name: [] for s in scenarios}

    async def one(scenario: Scenario) -> None:
        async with gate:
            outcome = await run_scenario(deps, receptionist, scenario)
        results[scenario.name].append(outcome)
        if progress:
            progress(outcome)

    await asyncio.gather(*(one(s) for s in scenarios for _ in range(k)))
    return results


async def play_all(
    deps: Deps, receptionist: Receptionist, chosen: list[Scenario], concurrency: int = 8
) -> list[Outcome]:
    """Every scenario once, a few at a time: each turn holds pooled connections, and a hundred
    chats at once would wait on the pool (DATABASE_ACQUIRE_TIMEOUT_S) rather than on the model."""
    results = await evaluate(deps, receptionist, chosen, 1, concurrency)
    return [outcome for outcomes in results.values() for outcome in outcomes]


def table(results: dict[str, list[Outcome]], k: int) -> str:
    """pass^k per scenario: 1 when all k runs passed (a model that passes only sometimes is not
    one a clinic can leave alone with its customers), with the passes and the first failure."""
    width = max([len(n) for n in results] + [8])
    lines = [f"{'scenario':<{width}}  passes  pass^{k}  first failure"]
    for name, outcomes in results.items():
        passes = sum(o.passed for o in outcomes)
        failure = next((o.failures[0] for o in outcomes if o.failures), "")
        lines.append(f"{name:<{width}}  {passes:>3}/{k:<2}  {int(passes == k):>6}  {failure[:100]}")
    total = sum(all(o.passed for o in outs) for outs in results.values())
    lines.append(
        f"pass^{k}: {total}/{len(results)} scenarios ({total / max(1, len(results)):.0%}); "
        f"pass^1: {sum(o.passed for outs in results.values() for o in outs)}/"
        f"{sum(len(outs) for outs in results.values())} runs"
    )
    return "\n".join(lines)


# ---- generalisation: the rules part and the held-out part, per language ----------------------

HELD_OUT_MARK = "# ==== HELD-OUT"
_TAG = re.compile(r"\s*\[(en|pt)\]\s*$")
_REGION = re.compile(r"\s*\((CO|MX|AR|ES)\)\s*$")  # "(AR)": the region, for the reader


@dataclass(frozen=True)
class Phrasing:
    intent: str
    text: str  # as the customer writes it (tags and region marks removed)
    language: str  # "es", or the line's [en] / [pt] tag


def load_phrasings(path: Path) -> tuple[list[Phrasing], list[Phrasing]]:
    """The corpus (`intent | message [en]` a line): the part the intent table is written against,
    and the held-out part after HELD_OUT_MARK."""
    written, _, held = path.read_text(encoding="utf-8").partition(HELD_OUT_MARK)
    return _phrasings(written), _phrasings(held.partition("\n")[2])


def _phrasings(text: str) -> list[Phrasing]:
    out = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        intent, message = (part.strip() for part in line.split("|", 1))
        tag = _TAG.search(message)
        message = _REGION.sub("", _TAG.sub("", message))
        out.append(Phrasing(intent, message, tag.group(1) if tag else "es"))
    return out


def _rate(passed: int, total: int) -> str:
    return f"{passed}/{total} ({passed / total:.0%})" if total else "-"


def _by_language(items: list[tuple[str, bool]]) -> str:
    """ "12/14 (86%)  es 8/8 (100%)  en 2/3 (67%)  pt 2/3 (67%)" from (language, passed) pairs."""
    parts = [_rate(sum(ok for _, ok in items), len(items))]
    for lang in ("es", "en", "pt"):
        mine = [ok for language, ok in items if language == lang]
        parts.append(f"{lang} {_rate(sum(mine), len(mine))}")
    return "  ".join(parts)


def phrasing_lines(path: Path) -> list[str]:
    """The intent table's pass rate over the corpus's rules part and held-out part."""
    rules, held = load_phrasings(path)
    lines = []
    for name, part in (("rules", rules), ("held-out", held)):
        results = [(p.language, intents.classify(p.text) == p.intent) for p in part]
        lines.append(f"phrasings {name:<9} {_by_language(results)}")
    return lines


def scenario_lines(
    rules: dict[str, list[Outcome]],
    held: dict[str, list[Outcome]],
    languages: dict[str, str],
) -> list[str]:
    """pass^1 of the scenario runs of the rules part and of the held-out part, per language."""
    lines = []
    for name, results in (("rules", rules), ("held-out", held)):
        runs = [(languages.get(s, "es"), o.passed) for s, outs in results.items() for o in outs]
        lines.append(f"scenarios {name:<9} {_by_language(runs)}")
    return lines


def generalisation(
    folder: Path,
    rules: dict[str, list[Outcome]],
    held: dict[str, list[Outcome]],
    played: list[Scenario],
) -> str:
    """What `skytide eval` prints last: how the model does on what it was written against and
    on what it never saw (issue 20 item 7), for phrasings and scenarios, per language."""
    languages = {s.name: s.language for s in played}
    corpus = folder / "phrasings.txt"
    lines = ["generalisation (pass rate: all, then per language):"]
    lines += phrasing_lines(corpus) if corpus.exists() else []
    lines += scenario_lines(rules, held, languages)
    return "\n".join(lines)
