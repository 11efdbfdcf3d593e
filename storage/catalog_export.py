"""`skytide catalog export`: the organization's catalogue in the format `catalog import` reads,
so a clinic can be copied, reviewed or edited and imported back."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from storage import org_settings
from storage.catalog_file import DAYS
from storage.db import Db


def _week(rows: list[tuple[int, time, time]]) -> dict[str, list[str]]:
    week: dict[str, list[str]] = {}
    for weekday, a, b in rows:
        week.setdefault(DAYS[weekday], []).append(f"{a:%H:%M}-{b:%H:%M}")
    return week


def _time_off(start: datetime, end: datetime, tz: ZoneInfo, reason: str) -> dict[str, Any]:
    a, b = start.astimezone(tz), end.astimezone(tz)
    whole_days = a.time() == time.min and b.time() == time.min
    if whole_days:
        out = {"from": a.date().isoformat(), "to": (b.date() - timedelta(days=1)).isoformat()}
    else:
        out = {"date": a.date().isoformat(), "start": f"{a:%H:%M}", "end": f"{b:%H:%M}"}
    return out | ({"reason": reason} if reason else {})


async def export_catalog(db: Db, org: str) -> dict[str, Any]:
    o = await db.fetchrow(
        "select name, timezone, settings from organizations where id = $1::uuid", org
    )
    if o is None:
        raise LookupError(f"no organization {org}")
    tz = ZoneInfo(o["timezone"])
    hours = await db.fetch(
        "select weekday, opens, closes from business_hours where organization_id = $1::uuid "
        "order by weekday, opens",
        org,
    )
    staff = []
    for s in await db.fetch(
        "select id, name, role, active from staff where organization_id = $1::uuid "
        "order by created_at, name",
        org,
    ):
        entry: dict[str, Any] = {"name": s["name"], "role": s["role"]}
        if not s["active"]:
            entry["active"] = False
        own = await db.fetch(
            "select weekday, starts, ends from staff_hours where staff_id = $1 "
            "and organization_id = $2::uuid order by weekday, starts",
            s["id"],
            org,
        )
        if own:
            entry["hours"] = _week([tuple(r.values()) for r in own])
        off = await db.fetch(
            "select starts_at, ends_at, reason from staff_time_off where staff_id = $1 "
            "and organization_id = $2::uuid order by starts_at",
            s["id"],
            org,
        )
        if off:
            entry["time_off"] = [
                _time_off(r["starts_at"], r["ends_at"], tz, r["reason"]) for r in off
            ]
        staff.append(entry)
    services = []
    for s in await db.fetch(
        """
            select sv.name, sv.description, sv.duration_minutes, sv.price, sv.currency, sv.active,
                   array_remove(array_agg(st.name order by st.name), null) as staff
            from services sv left join staff_services x on x.service_id = sv.id
            left join staff st on st.id = x.staff_id
            where sv.organization_id = $1::uuid group by sv.id order by sv.created_at, sv.name""",
        org,
    ):
        price = s["price"]
        entry = {
            "name": s["name"],
            "description": s["description"],
            "duration_min": s["duration_minutes"],
            "price": int(price) if price == int(price) else float(price),
            "currency": s["currency"],
        }
        if s["staff"]:
            entry["staff"] = list(s["staff"])
        if not s["active"]:
            entry["active"] = False
        services.append(entry)
    closures = [
        {"date": r["day"].isoformat(), "reason": r["reason"]}
        for r in await db.fetch(
            "select day, reason from closures where organization_id = $1::uuid order by day", org
        )
    ]
    faq = [
        {"q": r["question"], "a": r["answer"]}
        for r in await db.fetch(
            "select question, answer from knowledge_entries where organization_id = $1::uuid order by created_at",
            org,
        )
    ]
    return {
        "organization": {
            "name": o["name"],
            "timezone": o["timezone"],
            "settings": {
                k: v
                for k, v in o["settings"].items()
                if k in org_settings.KEYS and k not in org_settings.SECRET_KEYS
            },
        },
        "hours": _week([tuple(r.values()) for r in hours]),
        "closures": closures,
        "staff": staff,
        "services": services,
        "faq": faq,
    }


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)
