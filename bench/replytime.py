"""Reply time as a customer feels it: from the last message of a burst to its answer.

python -m bench.replytime

Plays the burst corpus (bench/burst_corpus.py), each burst in its own chat, through the
real pipeline in one process (embedded Redis and PostgreSQL, the offline model behind a delay
that stands for a real model: MODEL_BASE_S plus MODEL_PER_CHAR_S per character of the turn's
messages, per model request), replies going to the fake Gupshup. Runs twice in the same run:
with the adaptive quiet window (graph/bursts.py) and with today's fixed window of
DEBOUNCE_SECONDS (the baseline), and the adaptive window once more without TURN_RESTART (a
message landing mid-turn waits for the next turn instead of restarting it). Prints per run: reply time p50/p90 from the burst's last
message, bursts answered more than once, answers that missed a message sent before they went
out, model requests and prompt characters per turn. "Answered more than once" counts a burst
whose messages, all sent before its first answer arrived, were answered by more than one turn;
a message written after an answer arrived starts a new exchange. A turn abandoned for newer
messages sent nothing (a later turn of its chat read all its messages): it counts among the model
requests, not among the answers. Asserts nothing.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp

from graph.contract import TurnInput, TurnResult
from graph.receptionist import Receptionist
from bench.burst_corpus import BURSTS
from ops.app.wiring import open_deps, run_async, running_system
from ops.deps import Deps
from ops.settings import ALL_ROLES, Settings
from ops.system import services
from storage.db import migrate
from storage.seed import demo_today, seed_demo
from tests.fakes.gupshup import FakeGupshup

MODEL_BASE_S = 0.6
MODEL_PER_CHAR_S = 0.002  # about 8 ms a token of prompt and answer together
TOKEN = "bench-replytime-token"
APP = "ReplyTimeBench"
START_SPREAD_S = 3.0  # bursts start spread over this, as chats do


@dataclass
class Turn:
    phone: str
    texts: list[str]
    started: float
    ended: float = 0.0


@dataclass
class Turns:
    seen: list[Turn] = field(default_factory=list)


def slow_receptionist(turns: Turns) -> Callable[[Deps, Any], Receptionist]:
    """The real receptionist (offline model) behind a model's latency, recorded."""

    class Slow(Receptionist):
        async def run_turn(self, turn: TurnInput) -> TurnResult:
            seen = Turn(turn.chat, list(turn.texts), time.time())
            turns.seen.append(seen)
            await asyncio.sleep(MODEL_BASE_S + MODEL_PER_CHAR_S * sum(len(t) for t in turn.texts))
            result = await super().run_turn(turn)
            seen.ended = time.time()
            return result

    return lambda deps, saver: Slow(deps, saver)


def webhook(phone: str, text: str, message_id: str, ts_ms: int) -> dict[str, Any]:
    return {
        "app": APP,
        "timestamp": ts_ms,
        "version": 2,
        "type": "message",
        "payload": {
            "id": message_id,
            "source": phone,
            "type": "text",
            "payload": {"text": text},
            "sender": {
                "phone": phone,
                "name": "Cliente",
                "country_code": "57",
                "dial_code": phone[2:],
            },
        },
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def play(
    settings: Settings, deps: Deps, adaptive: bool, label: str, tag: str, restart: bool = True
) -> None:
    turns = Turns()
    run_settings = settings.model_copy(
        update={"debounce_adaptive": adaptive, "dev_chat_enabled": False, "turn_restart": restart}
    )
    async with FakeGupshup() as gupshup:
        run_settings = run_settings.model_copy(update={"gupshup_api_url": gupshup.url})
        roles = tuple(r for r in ALL_ROLES if r != "scheduler")
        async with running_system(
            run_settings, roles, deps=None, receptionist_builder=slow_receptionist(turns)
        ) as system:
            sent_at: dict[
                str, list[tuple[float, str]]
            ] = {}  # phone -> (when, text) of each message

            async def burst(i: int, messages: list[tuple[float, str]]) -> None:
                phone = f"57310{tag}{i:05d}"
                await asyncio.sleep(START_SPREAD_S * i / len(BURSTS))
                async with aiohttp.ClientSession() as http:
                    for j, (gap, text) in enumerate(messages):
                        await asyncio.sleep(gap)
                        sent_at.setdefault(phone, []).append((time.time(), text))
                        body = webhook(phone, text, f"{tag}-{i}-{j}", int(deps.clock() * 1000))
                        async with http.post(
                            system.url + "/webhooks/gupshup",
                            json=body,
                            headers={"Authorization": f"Bearer {TOKEN}"},
                        ) as r:
                            assert r.status == 200, await r.text()

            await asyncio.gather(*(burst(i, messages) for i, (_, messages) in enumerate(BURSTS)))
            longest_window = settings.debounce_max_wait_seconds + 5 * MODEL_BASE_S + 5
            deadline = time.monotonic() + longest_window
            while (
                time.monotonic() < deadline
            ):  # until every chat is answered after its last message
                answered = {
                    m.destination
                    for m in gupshup.sent
                    if m.received_at >= sent_at.get(m.destination, [(0.0, "")])[-1][0]
                }
                if len(answered) == len(BURSTS):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(2 * MODEL_BASE_S)  # a late second answer would show here
    reply_s: list[float] = []
    more_than_once = missed = 0
    which: list[str] = []
    for i in range(len(BURSTS)):
        phone = f"57310{tag}{i:05d}"
        last_sent = sent_at[phone][-1][0]
        replies = sorted(m.received_at for m in gupshup.sent if m.destination == phone)
        after_last = [r for r in replies if r >= last_sent]
        if after_last:
            reply_s.append(after_last[0] - last_sent)
        chat_turns = [t for t in turns.seen if t.phone == phone]
        # Abandoned turns answered nothing: a later turn of the chat read all their messages.
        chat_turns = [
            t
            for k, t in enumerate(chat_turns)
            if not any(set(t.texts) <= set(later.texts) for later in chat_turns[k + 1 :])
        ]
        # Answered in pieces: a second turn made only of messages the customer sent before the
        # first answer reached them (one written after an answer is a new exchange, not a split).
        first_answer = replies[0] if replies else float("inf")
        sent_before = {text for when, text in sent_at[phone] if when < first_answer}
        split = any(set(t.texts) <= sent_before for t in chat_turns[1:])
        more_than_once += split
        # An answer that ignored a message sent while its turn ran (sent before the answer went
        # out, not among the turn's messages): "it answered my first message, not my second".
        ignored = sum(
            1
            for t in chat_turns
            if any(
                t.started < when < t.ended and text not in t.texts for when, text in sent_at[phone]
            )
        )
        missed += ignored
        if split or ignored:
            which.append(" + ".join(text for _, text in BURSTS[i][1]))
    n_turns = max(1, len(turns.seen))
    chars = sum(sum(len(x) for x in t.texts) for t in turns.seen)
    print(
        f"  {label:<26} reply p50 {pct(reply_s, 0.5):5.2f} s  p90 {pct(reply_s, 0.9):5.2f} s  "
        f"answered {len(reply_s)}/{len(BURSTS)}  bursts answered more than once {more_than_once}  "
        f"answers that missed a message {missed}  model requests {len(turns.seen)} "
        f"({len(turns.seen) / len(BURSTS):.2f}/burst), {chars / n_turns:.0f} prompt chars/turn"
    )
    for texts in which:
        print(f"    split or stale: {texts}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Settings(
            data_dir=Path(tmp),
            log_level="WARNING",
            debounce_seconds=10.0,
            debounce_max_wait_seconds=30.0,
            http_port=18765,
        )
        async with services(base) as settings, open_deps(settings) as deps:
            await migrate(deps.pool)
            await seed_demo(deps.pool, app_name=APP, webhook_token=TOKEN, today=demo_today(deps))
            print(
                f"  {len(BURSTS)} bursts, model {MODEL_BASE_S * 1000:.0f} ms + "
                f"{MODEL_PER_CHAR_S * 1000:.0f} ms/char per request; DEBOUNCE_SECONDS "
                f"{settings.debounce_seconds:g}, max wait {settings.debounce_max_wait_seconds:g}"
            )
            await play(settings, deps, adaptive=False, label="fixed window (baseline)", tag="1")
            await play(settings, deps, adaptive=True, label="adaptive window", tag="2")
            await play(
                settings, deps, adaptive=True, label="adaptive, no restart", tag="3", restart=False
            )


if __name__ == "__main__":
    run_async(main())
