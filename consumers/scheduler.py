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
from datetime import datetime, time, timedelta
from typing import Any, Callable
from zoneinfo import ZoneInfo

from graph import i18n, replies
from ops import metrics
from consumers import ticker
from ops.deps import Deps
from ops.outages import dependency_of
from storage import due, jobs, keys, org_settings, reminders, streams
from storage.catalog import org_profile
from storage.events import (
    BadEvent,
    ConfirmationJob,
    OutboundMessage,
    ReminderJob,
)
from storage.jobs import JobOutcome, Postponed
from storage.keys import Stream

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
        for org, score in await due.JOBS.due(deps.redis, deps.now_ms()):
            # The index protocol (storage/due.py): take, lease what is due, put back. The leases
            # keep the organization indexed while its jobs run: a worker dying meanwhile leaves
            # them to the next one when they end.
            await due.JOBS.take(deps.redis, org, score)
            claimed = await jobs.claim(
                deps.redis,
                org,
                now_ms=deps.now_ms(),
                lease_ms=int(s.job_lease_s * 1000),
                limit=s.job_batch,
            )
            leased_until = await due.JOBS.put_back(deps.redis, org)
            for job in claimed:
                try:
                    await self.run_job(org, job)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the lease ends and a worker tries again
                    await self._failed(org, job, exc)
                ran += 1
            if claimed and leased_until is not None:  # the leases are over: index what is left
                await due.JOBS.refresh(deps.redis, org, leased_until)
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
            orgs = await reminders.organization_ids(deps.pool)
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
        # Also put back what a scheduler dying between take and put-back dropped from the index.
        await due.JOBS.sweep(deps.redis, orgs)
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
        kind = job.kind
        down = dependency_of(exc)
        if down:
            metrics.scheduled_jobs.labels(org, kind, JobOutcome.WAITING_DEPENDENCY).inc()
            log.warning("job %s of %s waits for %s: %s", job.id, org, down, exc)
            return
        failures = await jobs.failed(self.deps.redis, org, job)
        if failures >= self.deps.settings.max_deliveries:
            await jobs.ack(self.deps.redis, org, job)
            metrics.scheduled_jobs.labels(org, kind, JobOutcome.DROPPED_FAILING).inc()
            log.error("job %s of %s dropped after %d failures", job.id, org, failures, exc_info=exc)
            return
        metrics.scheduled_jobs.labels(org, kind, JobOutcome.FAILED).inc()
        log.error(
            "job %s of %s failed (%d); retried after its lease", job.id, org, failures, exc_info=exc
        )

    async def run_job(self, org: str, job: jobs.Job) -> None:
        if job.data is None:
            raise BadEvent(f"job {job.id} has data that decodes to no job")
        outcome = await jobs.settle(
            self.deps.redis, org, job, await self._effect(org, job.id, job.data)
        )
        metrics.scheduled_jobs.labels(org, job.kind, outcome).inc()
        log.info("job %s of %s: %s", job.id, org, outcome)

    async def _effect(
        self, org: str, job_id: str, job: ConfirmationJob | ReminderJob
    ) -> JobOutcome | Postponed:
        deps = self.deps
        appt = await reminders.due_appointment(deps.pool, org, job.appointment_id)
        profile = await org_profile(deps.pool, org)
        if appt is None or profile is None:
            return JobOutcome.SKIPPED_CANCELLED
        if isinstance(job, ReminderJob):
            if appt.status != "confirmed":
                return JobOutcome.SKIPPED_CANCELLED
            if int(appt.starts_at.timestamp() * 1000) != job.starts_ms:
                return JobOutcome.SKIPPED_MOVED
            if deps.now_ms() >= job.stale_after_ms:
                return JobOutcome.SKIPPED_STALE
        if appt.opted_out:
            return JobOutcome.SKIPPED_OPTED_OUT
        tz = ZoneInfo(profile.timezone)
        now = datetime.fromtimestamp(deps.clock(), tz)
        if isinstance(job, ReminderJob):
            quiet = org_settings.quiet_hours(profile.settings)
            if quiet and quiet.contains(now.time().replace(tzinfo=None)):
                later = _end_of_quiet(now, quiet.end)
                if later >= appt.starts_at:
                    return JobOutcome.SKIPPED_QUIET
                return Postponed(int(later.timestamp() * 1000))
        message = self._message(org, job_id, job, appt, profile.settings, tz, now)
        await streams.publish(deps.redis, message, Stream.OUTBOUND)
        if isinstance(job, ReminderJob):
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
        return JobOutcome.SENT

    def _message(
        self,
        org: str,
        job_id: str,
        job: ConfirmationJob | ReminderJob,
        appt: reminders.Due,
        settings: dict[str, Any],
        tz: ZoneInfo,
        now: datetime,
    ) -> OutboundMessage:
        local = appt.starts_at.astimezone(tz)
        # In the chat's language, else the organization's (a chat that has not said enough yet).
        lang = appt.language or org_settings.default_language(settings)
        date, clock = replies.day(local, lang), replies.clock(local, lang)
        address = settings.get("address") or ""
        message = OutboundMessage(
            org=org,
            phone=appt.phone,
            idempotency_key=f"job:{job_id}",
            purpose=job.kind,
            requires_bot_enabled=False,
        )
        if isinstance(job, ConfirmationJob):
            text = confirmation_text(job.change, appt.service_name, date, clock, address, lang)
            return message.model_copy(update={"text": text})
        window_open = appt.last_inbound_at is not None and now - appt.last_inbound_at < timedelta(
            hours=self.deps.settings.window_hours
        ) - timedelta(seconds=self.deps.settings.window_margin_s)
        template_id = org_settings.template_for(settings, "reminder_template_id", lang)
        if not window_open and template_id:
            return message.model_copy(
                update={
                    "template_id": template_id,
                    "template_params": [appt.service_name, date, clock, address],
                }
            )
        text = i18n.text("reminder.text", lang, service=appt.service_name, date=date, clock=clock)
        text += i18n.text("reminder.where", lang, address=address) if address else ""
        buttons = i18n.words("reminder.buttons", lang)  # Confirmar, Reprogramar, Cancelar
        if appt.confirmed_by_contact_at:  # already confirmed: no question, only how to change it
            text += i18n.text("reminder.expect", lang)
            return message.model_copy(update={"text": text, "buttons": buttons[1:]})
        text += i18n.text("reminder.ask", lang)
        return message.model_copy(update={"text": text, "buttons": buttons})

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


def _end_of_quiet(now: datetime, end: time) -> datetime:
    candidate = now.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    return candidate if candidate > now else candidate + timedelta(days=1)
