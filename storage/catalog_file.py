"""The catalogue as a YAML file: `skytide catalog import FILE` and `skytide catalog export`.

Importing is idempotent: services and staff are matched by name, FAQ entries by question,
closures by date, time off by person and span. Running the same file twice changes nothing;
an edited entry is updated in place (its embedding cleared, so `embed` refreshes it); weekly
hours (the organization's and each listed staff member's) are replaced by the file's. Entries
absent from the file are left alone: set `active: false` to retire a service or a person.
Everything happens in one transaction: a bad file changes nothing.

    organization: {name, timezone, settings: {advisor_phone, country, reminder_offsets_h, ...}}
    hours: {mon: "08:00-18:00", sat: "09:00-14:00"}          # days left out are closed
    closures: [{date: 2027-12-24, reason: Nochebuena}]
    staff: [{name, role, hours: {...}, time_off: [{from: 2027-03-10, to: 2027-03-11},
                                                  {date: 2027-03-12, start: "08:00", end: "12:00"}]}]
    services: [{name, description, duration_min, price, currency, staff: [names], active}]
    faq: [{q, a}]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import yaml

from storage import org_settings, schedules
from storage.db import Db

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class BadCatalog(ValueError):
    """The file cannot be imported; the message says where."""


@dataclass
class Report:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, kind: str) -> None:
        bucket = self.created if kind == "created" else self.updated
        bucket[what] = bucket.get(what, 0) + 1

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated)

    def __str__(self) -> str:
        def fmt(d: dict[str, int]) -> str:
            return ", ".join(f"{n} {k}" for k, n in sorted(d.items())) or "nothing"

        return f"created {fmt(self.created)}; updated {fmt(self.updated)}"


def _spans(value: Any, where: str) -> list[tuple[time, time]]:
    out = []
    for part in [value] if isinstance(value, str) else value or []:
        start, sep, end = str(part).partition("-")
        try:
            a, b = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
        except ValueError:
            raise BadCatalog(f"{where}: {part!r} is not a span like 08:00-18:00") from None
        if not sep or a >= b:
            raise BadCatalog(f"{where}: {part!r} must start before it ends")
        out.append((a, b))
    return out


def _week(value: Any, where: str) -> list[tuple[int, time, time]]:
    if not isinstance(value, dict):
        raise BadCatalog(f"{where}: expected days like {{mon: '08:00-18:00'}}")
    out = []
    for day, spans in value.items():
        if str(day).lower()[:3] not in DAYS:
            raise BadCatalog(f"{where}: {day!r} is not a weekday (mon..sun)")
        out += [
            (DAYS.index(str(day).lower()[:3]), a, b) for a, b in _spans(spans, f"{where}.{day}")
        ]
    return sorted(out)


def _date(value: Any, where: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise BadCatalog(f"{where}: {value!r} is not a date (YYYY-MM-DD)") from None


def load(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise BadCatalog(f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise BadCatalog(
            "the file must be a mapping with organization, hours, staff, services, faq"
        )
    unknown = set(data) - {"organization", "hours", "closures", "staff", "services", "faq"}
    if unknown:
        raise BadCatalog(f"unknown section(s): {', '.join(sorted(unknown))}")
    return data


async def import_catalog(pool: asyncpg.Pool, org: str, data: dict[str, Any]) -> Report:
    report = Report()
    async with pool.acquire() as conn, conn.transaction():
        # One import per organization at a time: matching by name is a read-then-write.
        await conn.execute("select pg_advisory_xact_lock(hashtext('catalog:' || $1))", org)
        row = await conn.fetchrow(
            "select name, timezone, settings from organizations where id = $1::uuid", org
        )
        if row is None:
            raise BadCatalog(f"no organization {org}")
        o = data.get("organization") or {}
        try:
            settings = org_settings.parse(o.get("settings") or {})
            tz_name = (
                org_settings.check_timezone(o["timezone"]) if o.get("timezone") else row["timezone"]
            )
        except org_settings.BadSetting as exc:
            raise BadCatalog(f"organization: {exc}") from None
        if (
            o.get("name", row["name"]) != row["name"]
            or tz_name != row["timezone"]
            or any(row["settings"].get(k) != v for k, v in settings.items())
        ):
            await org_settings.update(conn, org, settings, name=o.get("name"), timezone=tz_name)
            report.count("organization", "updated")
        tz = ZoneInfo(tz_name)
        if "hours" in data:
            await _hours(conn, org, _week(data["hours"], "hours"), report)
        for i, c in enumerate(data.get("closures") or []):
            day = _date(c.get("date"), f"closures[{i}].date")
            done = await conn.fetchval(
                "insert into closures (organization_id, day, reason) values ($1::uuid, $2, $3) "
                "on conflict (organization_id, day) do update set reason = excluded.reason "
                "where closures.reason is distinct from excluded.reason returning (xmax = 0)",
                org,
                day,
                str(c.get("reason") or ""),
            )
            if done is not None:
                report.count("closures", "created" if done else "updated")
        staff_ids = {}
        for i, s in enumerate(data.get("staff") or []):
            staff_ids[s.get("name")] = await _staff(conn, org, tz, s, f"staff[{i}]", report)
        for r in await conn.fetch(
            "select name, id::text from staff where organization_id = $1::uuid", org
        ):
            staff_ids.setdefault(r["name"], r["id"])
        for i, s in enumerate(data.get("services") or []):
            await _service(conn, org, s, f"services[{i}]", staff_ids, settings, report)
        for i, f in enumerate(data.get("faq") or []):
            q, a = str(f.get("q") or "").strip(), str(f.get("a") or "").strip()
            if not q or not a:
                raise BadCatalog(f"faq[{i}]: needs q and a")
            old = await conn.fetchrow(
                "select id, answer from knowledge_entries "
                "where organization_id = $1::uuid and question = $2",
                org,
                q,
            )
            if old is None:
                await conn.execute(
                    "insert into knowledge_entries (organization_id, question, answer) "
                    "values ($1::uuid, $2, $3)",
                    org,
                    q,
                    a,
                )
                report.count("faq", "created")
            elif old["answer"] != a:
                await conn.execute(
                    "update knowledge_entries set answer = $2, embedding = null "
                    "where id = $1 and organization_id = $3::uuid",
                    old["id"],
                    a,
                    org,
                )
                report.count("faq", "updated")
    return report


async def _hours(conn: Db, org: str, week: list[tuple[int, time, time]], report: Report) -> None:
    now = [
        (r["weekday"], r["opens"], r["closes"])
        for r in await conn.fetch(
            "select weekday, opens, closes from business_hours where organization_id = $1::uuid "
            "order by weekday, opens",
            org,
        )
    ]
    if now != week:
        await conn.execute("delete from business_hours where organization_id = $1::uuid", org)
        await conn.executemany(
            "insert into business_hours (organization_id, weekday, opens, closes) "
            "values ($1::uuid, $2, $3, $4)",
            [(org, *h) for h in week],
        )
        report.count("hours", "updated")


async def _staff(
    conn: Db, org: str, tz: ZoneInfo, s: dict[str, Any], where: str, report: Report
) -> str:
    name = str(s.get("name") or "").strip()
    if not name:
        raise BadCatalog(f"{where}: needs a name")
    role, active = str(s.get("role") or ""), bool(s.get("active", True))
    old = await conn.fetchrow(
        "select id::text, role, active from staff where organization_id = $1::uuid and name = $2",
        org,
        name,
    )
    staff_id: str
    if old is None:
        staff_id = await conn.fetchval(
            "insert into staff (organization_id, name, role, active) "
            "values ($1::uuid, $2, $3, $4) returning id::text",
            org,
            name,
            role,
            active,
        )
        report.count("staff", "created")
    else:
        staff_id = old["id"]
        if (old["role"], old["active"]) != (role, active):
            await conn.execute(
                "update staff set role = $2, active = $3 where id = $1::uuid"
                " and organization_id = $4::uuid",
                staff_id,
                role,
                active,
                org,
            )
            report.count("staff", "updated")
    if "hours" in s:
        week = _week(s["hours"], f"{where}.hours")
        now = [
            (r["weekday"], r["starts"], r["ends"])
            for r in await conn.fetch(
                "select weekday, starts, ends from staff_hours where staff_id = $1::uuid"
                " and organization_id = $2::uuid order by weekday, starts",
                staff_id,
                org,
            )
        ]
        if now != week:
            await schedules.set_staff_hours(conn, org, staff_id, week)
            report.count("staff hours", "updated")
    for j, off in enumerate(s.get("time_off") or []):
        w = f"{where}.time_off[{j}]"
        first = _date(off.get("from", off.get("date")), f"{w}.from")
        last = _date(off.get("to", off.get("date", first)), f"{w}.to")
        start = end = None
        if off.get("start") or off.get("end"):
            ((start, end),) = _spans(f"{off.get('start', '00:00')}-{off.get('end', '23:59')}", w)
        span = schedules.day_span(first, last, tz, start, end)
        if span[0] >= span[1]:
            raise BadCatalog(f"{w}: ends before it starts")
        if await schedules.add_time_off(
            conn, org, staff_id, *span, reason=str(off.get("reason") or "")
        ):
            report.count("time off", "created")
    return staff_id


async def _service(
    conn: Db,
    org: str,
    s: dict[str, Any],
    where: str,
    staff_ids: dict[str, str],
    settings: dict[str, Any],
    report: Report,
) -> None:
    name = str(s.get("name") or "").strip()
    if not name:
        raise BadCatalog(f"{where}: needs a name")
    try:
        duration = int(s.get("duration_min", ""))  # missing: a ValueError, as a bad value
        price = Decimal(str(s.get("price", 0)))
    except (TypeError, ValueError, InvalidOperation):
        raise BadCatalog(
            f"{where} ({name}): duration_min must be minutes and price a number"
        ) from None
    if duration <= 0 or price < 0:
        raise BadCatalog(f"{where} ({name}): duration_min must be positive and price not negative")
    values = (
        str(s.get("description") or ""),
        duration,
        price,
        str(s.get("currency") or settings.get("currency") or "COP"),
        bool(s.get("active", True)),
    )
    old = await conn.fetchrow(
        "select id::text, description, duration_minutes, price, currency, active "
        "from services where organization_id = $1::uuid and name = $2",
        org,
        name,
    )
    if old is None:
        service_id = await conn.fetchval(
            "insert into services (organization_id, name, description, duration_minutes, price, currency,"
            " active) values ($1::uuid, $2, $3, $4, $5, $6, $7) returning id::text",
            org,
            name,
            *values,
        )
        report.count("services", "created")
    else:
        service_id = old["id"]
        if tuple(old.values())[1:] != values:
            await conn.execute(
                "update services set description = $2, duration_minutes = $3, price = $4, currency = $5,"
                " active = $6, embedding = case when description = $2 then embedding end"
                " where id = $1::uuid and organization_id = $7::uuid",
                service_id,
                *values,
                org,
            )
            report.count("services", "updated")
    if "staff" in s:
        wanted = set()
        for who in s["staff"] or []:
            if who not in staff_ids:
                raise BadCatalog(f"{where} ({name}): no staff member named {who!r}")
            wanted.add(staff_ids[who])
        now = {
            r["staff_id"]
            for r in await conn.fetch(
                "select staff_id::text from staff_services where service_id = $1::uuid"
                " and organization_id = $2::uuid",
                service_id,
                org,
            )
        }
        if now != wanted:
            await conn.execute(
                "delete from staff_services where service_id = $1::uuid"
                " and organization_id = $2::uuid",
                service_id,
                org,
            )
            await conn.executemany(
                "insert into staff_services (staff_id, service_id, organization_id) "
                "values ($1::uuid, $2::uuid, $3::uuid)",
                [(w, service_id, org) for w in sorted(wanted)],
            )
            report.count("service staff", "updated")
