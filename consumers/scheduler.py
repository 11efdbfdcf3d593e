"""scheduler: runs due confirmations and reminders (storage/jobs.py) by putting a message on the
organization's outbound stream, so the sender's rules apply (pacing, window, opt-out, dedupe).

Any number of schedulers can run: a claim is atomic and leased, an unacknowledged job goes to
another worker when its lease ends, and the message's idempotency key is the job's, so a job run
twice still sends once. Redis holds the jobs, PostgreSQL the appointments: on start, whenever
Redis lost its marker (restarted empty) and every REMINDER_RECONCILE_S, one scheduler of the
fleet plans again what the appointments table says is missing (reminders.reconcile).
The clock is Deps.clock; in development `skytide clock advance` moves it
(DEV_CLOCK), so a reminder due tomorrow can be seen today.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Callable
from zoneinfo import ZoneInfo

from graph import i18n, replies
from ops import metrics
from consumers import ticker
from ops.deps import Deps
from ops.outages import dependency_of
from storage import jobs, keys, org_settings, reminders, streams
from storage.catalog import org_profile
from storage.events import OutboundMessage

log = logging.getLogger(__name__)


class OffsetClock:
    """The process clock plus a development offset read from Redis (`skytide clock advance`)."""

    def __init__(self, base: Callable[[], float]) -> None:
        self.base = base
        self.offset_ms = 0

    def __call__(self) -> float:
        return self.base() + self.offset_ms / 1000


class Scheduler:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.reconcile_pending = True  # on start, whatever the marker says
        self.name = f"{id(self):x}"
        self.dev_clock: OffsetClock | None = None
        if deps.settings.dev_clock:
            self.dev_clock = OffsetClock(deps.clock)
            # The whole process (ingress, agent, sender) sees the same time: `make run`, where
            # every role shares one process. Processes without the scheduler role keep real time.
            deps.clock = self.dev_clock

    async def tick(self) -> int:
        deps, s = self.deps, self.deps.settings
        if self.dev_clock is not None:
            self.dev_clock.offset_ms = int(await deps.redis.get(keys.DEV_CLOCK_OFFSET) or 0)
        if self.reconcile_pending or not await deps.redis.exists(keys.JOBS_RECONCILED):
            await self.reconcile()
        ran = 0
        for org in await jobs.due_orgs(deps.redis, deps.now_ms()):
            claimed = await jobs.claim(
                deps.redis,
                org,
                now_ms=deps.now_ms(),
                lease_ms=int(s.job_lease_s * 1000),
                limit=s.job_batch,
            )
            for job in claimed:
                try:
                    await self.run_job(org, job)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the lease ends and a worker tries again
                    await self._failed(org, job, exc)
                ran += 1
            await jobs.refresh_org(deps.redis, org)
        return ran

    async def reconcile(self) -> int | None:
        """Plan what Redis lacks from the appointments table; how many appointments got jobs,
        or None when another scheduler is at it or PostgreSQL cannot be read (tried again in
        a while: the due jobs meanwhile run as usual)."""
        deps, s = self.deps, self.deps.settings
        lock_s = max(1, int(s.job_lease_s))
        if not await deps.redis.set(keys.JOBS_RECONCILING, self.name, nx=True, ex=lock_s):
            self.reconcile_pending = False  # another scheduler does it
            return None
        self.reconcile_pending = False
        try:
            planned = await reminders.reconcile(deps.redis, deps.pool, deps.now_ms())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lock runs out, then a tick tries again
            log.warning(
                "cannot rebuild the reminders from PostgreSQL now (%s: %s); trying again "
                "within %d s",
                type(exc).__name__,
                exc,
                lock_s,
            )
            return None
        await deps.redis.set(
            keys.JOBS_RECONCILED, deps.now_ms(), ex=max(1, int(s.reminder_reconcile_s))
        )
        if await deps.redis.get(keys.JOBS_RECONCILING) == self.name:
            await deps.redis.delete(keys.JOBS_RECONCILING)
        if planned:
            log.warning(
                "planned the reminders of %d upcoming appointment(s) that had none in "
                "Redis (restarted empty, or entered in the CRM)",
                planned,
            )
        metrics.reminders_reconciled.inc(planned)
        return planned

    async def _failed(self, org: str, job: jobs.Job, exc: Exception) -> None:
        """A dependency that is down is waited out (the job comes back after its lease, however
        long that takes); a job that fails on its own is dropped after MAX_DELIVERIES tries."""
        kind = job.data.get("kind", "?")
        down = dependency_of(exc)
        if down:
            metrics.scheduled_jobs.labels(org, kind, "waiting_dependency").inc()
            log.warning("job %s of %s waits for %s: %s", job.id, org, down, exc)
            return
        failures = await jobs.failed(self.deps.redis, org, job)
        if failures >= self.deps.settings.max_deliveries:
            await jobs.ack(self.deps.redis, org, job)
            metrics.scheduled_jobs.labels(org, kind, "dropped_failing").inc()
            log.error("job %s of %s dropped after %d failures", job.id, org, failures, exc_info=exc)
            return
        metrics.scheduled_jobs.labels(org, kind, "failed").inc()
        log.error(
            "job %s of %s failed (%d); retried after its lease", job.id, org, failures, exc_info=exc
        )

    async def run_job(self, org: str, job: jobs.Job) -> None:
        kind = job.data.get("kind", "?")
        outcome = await self._effect(org, job)
        if outcome.startswith("postponed:"):
            await jobs.postpone(self.deps.redis, org, job, int(outcome.split(":")[1]))
            outcome = "postponed_quiet"
        else:
            await jobs.ack(self.deps.redis, org, job)
        metrics.scheduled_jobs.labels(org, kind, outcome).inc()
        log.info("job %s of %s: %s", job.id, org, outcome)

    async def _effect(self, org: str, job: jobs.Job) -> str:
        deps, data = self.deps, job.data
        appt = await reminders.due_appointment(deps.pool, org, data["appointment_id"])
        profile = await org_profile(deps.pool, org)
        if appt is None or profile is None:
            return "skipped_cancelled"
        if data["kind"] == "reminder":
            if appt.status != "confirmed":
                return "skipped_cancelled"
            if int(appt.starts_at.timestamp() * 1000) != data["starts_ms"]:
                return "skipped_moved"
            if deps.now_ms() >= data.get("stale_ms", data["starts_ms"]):
                return "skipped_stale"
        if appt.opted_out:
            return "skipped_opted_out"
        tz = ZoneInfo(profile.timezone)
        now = datetime.fromtimestamp(deps.clock(), tz)
        if data["kind"] == "reminder":
            quiet = org_settings.quiet_hours(profile.settings)
            if quiet and quiet.contains(now.time().replace(tzinfo=None)):
                later = _end_of_quiet(now, quiet.end)
                if later >= appt.starts_at:
                    return "skipped_quiet"
                return f"postponed:{int(later.timestamp() * 1000)}"
        message = self._message(org, job, appt, profile.settings, tz, now)
        await streams.publish(deps.redis, message, "outbound")
        if data["kind"] == "reminder":
            await reminders.remember_reminded(
                deps.redis,
                org,
                appt.phone,
                appt.id,
                int((appt.starts_at - now).total_seconds()) + 86400,
            )
            metrics.reminders_sent.labels(
                org, "template" if message.template_id else "interactive"
            ).inc()
        return "sent"

    def _message(
        self,
        org: str,
        job: jobs.Job,
        appt: reminders.Due,
        settings: dict,
        tz: ZoneInfo,
        now: datetime,
    ) -> OutboundMessage:
        local = appt.starts_at.astimezone(tz)
        # In the chat's language, else the organization's (a chat that has not said enough yet).
        lang = appt.language or org_settings.default_language(settings)
        date, clock = replies.day(local, lang), replies.clock(local, lang)
        address = settings.get("address") or ""
        base = {
            "org": org,
            "phone": appt.phone,
            "idempotency_key": f"job:{job.id}",
            "purpose": job.data["kind"],
            "requires_bot_enabled": False,
        }
        if job.data["kind"] == "confirmation":
            return OutboundMessage(
                text=confirmation_text(
                    job.data["change"], appt.service_name, date, clock, address, lang
                ),
                **base,
            )
        window_open = appt.last_inbound_at is not None and now - appt.last_inbound_at < timedelta(
            hours=self.deps.settings.window_hours
        ) - timedelta(seconds=self.deps.settings.window_margin_s)
        template_id = org_settings.template_for(settings, "reminder_template_id", lang)
        if not window_open and template_id:
            return OutboundMessage(
                template_id=template_id,
                template_params=[appt.service_name, date, clock, address],
                **base,
            )
        text = i18n.text("reminder.text", lang, service=appt.service_name, date=date, clock=clock)
        text += i18n.text("reminder.where", lang, address=address) if address else ""
        buttons = i18n.words("reminder.buttons", lang)  # Confirmar, Reprogramar, Cancelar
        if (
            appt.confirmed_by_contact_at
        ):  # already confirmed: no question, only the way to change it
            return OutboundMessage(
                text=text + i18n.text("reminder.expect", lang), buttons=buttons[1:], **base
            )
        return OutboundMessage(text=text + i18n.text("reminder.ask", lang), buttons=buttons, **base)

    async def run(self, stop: asyncio.Event) -> None:
        from consumers.retention import Retention

        await asyncio.gather(
            ticker.every(self.deps.settings.scheduler_tick_s, self.tick, stop, "scheduler"),
            ticker.every(
                self.deps.settings.retention_every_s, Retention(self.deps).tick, stop, "retention"
            ),
        )


class AttendanceStats:
    """The scrape-time sampler of skytide_appointment_attendance (one query per scrape)."""

    def __init__(self, deps: Deps, days: int = 30) -> None:
        self.deps = deps
        self.days = days

    async def __call__(self) -> None:
        since = datetime.fromtimestamp(self.deps.clock()).astimezone() - timedelta(days=self.days)
        metrics.attendance.clear()
        for org, outcome, n in await reminders.attendance(self.deps.pool, since):
            metrics.attendance.labels(org, outcome).set(n)


def confirmation_text(
    change: str, service: str, date: str, clock: str, address: str, lang: str = "es"
) -> str:
    where = f"\n📍 {address}" if address else ""
    if change == "cancelled":
        return i18n.text(
            "reminder.cancelled_message", lang, service=service, date=date, clock=clock
        )
    title = i18n.text(
        "reminder.rescheduled" if change == "rescheduled" else "reminder.confirmed", lang
    )
    return i18n.text(
        "reminder.booked_message",
        lang,
        title=title,
        service=service,
        date=date,
        clock=clock,
        where=where,
    )


def _end_of_quiet(now: datetime, end) -> datetime:
    candidate = now.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)
