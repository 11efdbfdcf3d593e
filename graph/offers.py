"""What check_availability offers for the window a customer asked: never a false "nothing".

The asked window first (the exact time, if one was asked). When it has nothing free, the offer
says why in a few words (a holiday, a closure, a closed weekday, after hours, nobody of the
staff that day, or simply booked) and brings the nearest free times: on the asked day(s) at
other times, then on the next open days (up to NEXT_DAYS after them). "No availability" is said
only about the days actually searched (`Offer.searched`), never as "the coming days".

Every slot offered is held for this chat (storage.holds) so two chats are never offered the
same last slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from datetime import date, datetime, time, timedelta

from graph import i18n, replies
from graph.state import ToolDeps
from graph.timeparse import When
from storage import appointments, catalog, holds, schedules

LIMIT = 3  # slots in one offer
SAME_DAY = 2  # of them at most on the asked day(s) when the asked time is not free: the rest later
NEXT_DAYS = 14  # how far after the asked days the next open days are looked for
PER_DAY = (
    2  # of the later slots at most on one day: two days to choose from when the asked one is closed
)


@dataclass(frozen=True)
class Offer:
    slots: list[appointments.Slot]
    exact: bool = False  # the exact time asked is free: propose it alone
    asked: datetime | None = None  # the exact time asked, when it was not free
    why: schedules.Unavailable | None = None  # why the asked window had nothing free
    searched: tuple[date, date] | None = None  # the days searched, when nothing at all was found

    def data(self) -> dict[str, Any]:
        """What the tool tells the model (and the offline model's reply): why, in plain fields."""
        out: dict[str, Any] = {}
        if self.why is not None:
            # replies.day and replies.clock read only weekday, day, month and hour, minute.
            why = {"kind": self.why.kind, "day": replies.day(self.why.day)}
            if self.why.reason and self.why.kind == "closure":
                why["reason"] = self.why.reason
            if self.why.opens is not None and self.why.closes is not None:
                why["hours"] = i18n.text(
                    "date.span",
                    start=replies.clock(self.why.opens),
                    end=replies.clock(self.why.closes),
                )
            out["why"] = why
        if self.searched is not None:
            out["searched"] = {
                "from": replies.day(self.searched[0]),
                "to": replies.day(self.searched[1]),
            }
        return out


async def find(t: ToolDeps, service: catalog.Service, window: When) -> Offer:
    """The offer for `window` (t: the expert run's ToolDeps), its slots held for this chat. Holding
    replaces the chat's previous holds, so the whole offer is held at once; a slot another chat
    held meanwhile is dropped, after one fresh search."""
    for _ in range(2):
        offer = await _search(t, service, window)
        got = await hold(t, [(s.staff_id, s.starts_at, s.ends_at) for s in offer.slots])
        if all(got):
            return offer
    kept = [s for s, ok in zip(offer.slots, got) if ok]
    return Offer(
        kept,
        exact=offer.exact and bool(kept),
        asked=offer.asked,
        why=offer.why,
        searched=offer.searched,
    )


async def _search(t: ToolDeps, service: catalog.Service, window: When) -> Offer:
    not_before = t.now + timedelta(minutes=t.settings.booking_lead_min)
    target = _target(window)
    asked = None
    if window.prefer is not None and len(window.days) == 1:
        # "mañana a las 10": that exact time if it is free, else the nearest free times around it.
        asked = datetime.combine(window.days[0], window.prefer, t.org.tz)
        # A one-minute grid: "a las 4 y cuarto" is checked at 4:15 itself, not at the next half hour.
        exact = await free(
            t,
            service,
            days=window.days,
            time_from=window.prefer,
            time_to=(asked + timedelta(minutes=1)).time(),
            not_before=not_before,
            limit=1,
            step_min=1,
        )
        if exact and exact[0].starts_at == asked:
            return Offer(exact[:1], exact=True)
        end = asked + timedelta(minutes=service.duration_minutes)
        span = (window.prefer, end.time() if end.date() == asked.date() else time.max)
    else:
        # Within a period or range the slots spread over it, unless a time or an edge was asked.
        slots = await free(
            t,
            service,
            days=window.days,
            time_from=window.time_from,
            time_to=window.time_to,
            not_before=not_before,
            prefer=target if window.prefer or window.order != "spread" else None,
        )
        if slots:
            return Offer(slots)
        span = (window.time_from, window.time_to)
    if asked is not None and asked < not_before:
        why = schedules.Unavailable("too_soon", asked.date())
    else:
        why = await _why(t, service, window.days, *span, whole=asked is not None)
    whole_days = asked is None and span == (
        time.min,
        time.max,
    )  # the day itself had nothing: no same-day search
    same = (
        []
        if whole_days
        else await free(
            t,
            service,
            days=window.days,
            time_from=time.min,
            time_to=time.max,
            not_before=not_before,
            prefer=target,
            limit=SAME_DAY,
        )
    )
    later, last = await _next_open(
        t, service, max(window.days), target, LIMIT - len(same), not_before
    )
    slots = same + later
    return Offer(slots, asked=asked, why=why, searched=None if slots else (min(window.days), last))


def _target(window: When) -> time | None:
    """The time the alternatives should be near: the time asked, the edge "a primera hora" means,
    or the middle of the period or range asked; None for a whole day (spread over the day)."""
    if window.prefer is not None:
        return window.prefer
    if window.order == "earliest":
        return time(0)
    if window.order == "latest":
        return time(23, 59)
    if (window.time_from, window.time_to) == (time.min, time.max):
        return None
    start = window.time_from.hour * 60 + window.time_from.minute
    end = (
        24 * 60 if window.time_to == time.max else window.time_to.hour * 60 + window.time_to.minute
    )
    middle = (start + end) // 2
    return time(min(middle // 60, 23), middle % 60)


async def _why(
    t: ToolDeps,
    service: catalog.Service,
    days: list[date],
    time_from: time,
    time_to: time,
    whole: bool,
) -> schedules.Unavailable:
    pool, org = t.pool, t.org.id
    cal = await schedules.load_calendar(pool, org, t.org.tz, days)
    staff = await appointments.eligible_staff(pool, org, service.id)
    return schedules.unavailable(cal, staff, days, time_from, time_to, whole=whole)


async def _next_open(
    t: ToolDeps,
    service: catalog.Service,
    after: date,
    target: time | None,
    limit: int,
    not_before: datetime,
) -> tuple[list[appointments.Slot], date]:
    """Free times of the next open days after `after`, at most PER_DAY a day so the customer
    gets more than one day to choose from (closed days are skipped without a search), and the
    last day looked at."""
    days = [after + timedelta(days=i + 1) for i in range(NEXT_DAYS)]
    cal = await schedules.load_calendar(t.pool, t.org.id, t.org.tz, days)
    found: list[appointments.Slot] = []
    for day in days:
        if len(found) >= limit:
            return found, day - timedelta(days=1)
        if cal.is_closed(day) or not cal.opening.get(day.weekday()):
            continue
        found += await free(
            t,
            service,
            days=[day],
            time_from=time.min,
            time_to=time.max,
            not_before=not_before,
            prefer=target,
            limit=min(PER_DAY, limit - len(found)),
        )
    return found, days[-1]


async def free(
    t: ToolDeps, service: catalog.Service, step_min: int | None = None, **window: Any
) -> list[appointments.Slot]:
    """Free slots of the window that no other chat holds, on the organization's grid of start times."""
    held = await holds.held_by_others(t.redis, t.org.id, t.chat, now_ms=t.now_ms())
    return await appointments.availability(
        t.pool,
        org=t.org.id,
        service=service,
        tz=t.org.tz,
        held=held,
        step_min=step_min or t.settings.slot_step_min,
        **window,
    )


async def hold(t: ToolDeps, slots: list[holds.Held]) -> list[bool]:
    """Hold these slots for this chat (its previous holds are let go): held or not, per slot."""
    return await holds.hold(
        t.redis,
        t.org.id,
        t.chat,
        slots,
        now_ms=t.now_ms(),
        ttl_ms=t.settings.slot_hold_min * 60_000,
    )
