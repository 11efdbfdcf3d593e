"""Staff schedules, time off, closures and public holidays in availability; the catalogue file
(import twice, edits, export) and organization settings."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from storage import appointments, catalog, catalog_export, catalog_file, org_settings, schedules
from storage.seed import DEMO_FILE, seed_demo

BOGOTA = ZoneInfo("America/Bogota")
NOW = datetime(2027, 3, 1, 7, 0, tzinfo=BOGOTA)  # Monday 1 March 2027
HOLIDAY = date(2027, 3, 22)  # San José (observed), a Colombian public holiday, a Monday


async def free(deps, org, name, day, **kw):
    service = await catalog.find_service(deps.pool, org, name)
    return await appointments.availability(
        deps.pool,
        org=org,
        service=service,
        tz=BOGOTA,
        days=[day],
        time_from=time.min,
        time_to=time.max,
        not_before=NOW,
        limit=100,
        **kw,
    )


async def staff_id(deps, org, name):
    return await deps.pool.fetchval(
        "select id::text from staff where organization_id = $1::uuid and name = $2", org, name
    )


@pytest.fixture
async def clinic(deps):
    return await seed_demo(deps.pool, today=date(2027, 3, 1))  # Camila off Thursday 11 March


async def test_a_public_holiday_is_never_offered_unless_the_clinic_opens(deps, clinic):
    assert await free(deps, clinic, "limpieza facial", HOLIDAY) == []
    assert await free(
        deps, clinic, "limpieza facial", HOLIDAY + timedelta(days=7)
    )  # a normal Monday
    await org_settings.update(deps.pool, clinic, {"open_on_holidays": True})
    assert await free(deps, clinic, "limpieza facial", HOLIDAY)
    # Another country, other holidays: 22 March is an ordinary day in Mexico.
    await org_settings.update(deps.pool, clinic, {"open_on_holidays": False, "country": "MX"})
    assert await free(deps, clinic, "limpieza facial", HOLIDAY)


async def test_each_staff_member_is_offered_only_on_their_days(deps, clinic):
    laura, camila = (
        await staff_id(deps, clinic, "Laura Gómez"),
        await staff_id(deps, clinic, "Camila Torres"),
    )
    monday = await free(deps, clinic, "limpieza facial", date(2027, 3, 8))
    assert monday and {s.staff_id for s in monday} == {laura}  # Camila does not work Mondays
    saturday = await free(deps, clinic, "limpieza facial", date(2027, 3, 6))
    assert saturday and {s.staff_id for s in saturday} == {camila}  # Laura does not work Saturdays
    # Camila starts at 10 on weekdays: a 9:00 facial on Tuesday is Laura's.
    tuesday = await free(deps, clinic, "limpieza facial", date(2027, 3, 2))
    assert {s.staff_id for s in tuesday if s.starts_at.hour < 10} == {laura}


async def test_a_day_off_next_week_is_never_offered(deps, clinic):
    camila = await staff_id(deps, clinic, "Camila Torres")
    day_off = date(2027, 3, 11)  # Thursday of the week after the seed's today
    assert camila in {
        s.staff_id for s in await free(deps, clinic, "limpieza facial", day_off - timedelta(days=7))
    }
    slots = await free(deps, clinic, "limpieza facial", day_off)
    assert slots and camila not in {s.staff_id for s in slots}
    # Laura booked all Thursday long: nobody left for a facial that day.
    laura = await staff_id(deps, clinic, "Laura Gómez")
    await schedules.add_time_off(
        deps.pool, clinic, laura, *schedules.day_span(day_off, day_off, BOGOTA)
    )
    assert await free(deps, clinic, "limpieza facial", day_off) == []


async def test_part_of_a_day_off_and_a_closure(deps, clinic):
    laura = await staff_id(deps, clinic, "Laura Gómez")
    monday = date(2027, 3, 8)
    await schedules.add_time_off(
        deps.pool, clinic, laura, *schedules.day_span(monday, monday, BOGOTA, time(8), time(12))
    )
    starts = {s.starts_at.time() for s in await free(deps, clinic, "limpieza facial", monday)}
    assert starts and min(starts) == time(12)
    await deps.pool.execute(
        "insert into closures (organization_id, day) values ($1::uuid, $2)", clinic, monday
    )
    assert await free(deps, clinic, "limpieza facial", monday) == []


async def test_a_held_slot_is_busy_for_that_staff_member_only(deps, clinic):
    laura = await staff_id(deps, clinic, "Laura Gómez")
    monday = date(2027, 3, 8)
    nine = datetime(2027, 3, 8, 9, 0, tzinfo=BOGOTA)
    held = [(laura, nine, nine + timedelta(hours=1))]
    starts = {s.starts_at for s in await free(deps, clinic, "limpieza facial", monday, held=held)}
    assert nine not in starts and nine - timedelta(minutes=30) not in starts
    assert nine + timedelta(hours=1) in starts


async def test_catalog_import_twice_changes_nothing_the_second_time(deps, make_org):
    org = await make_org()
    data = catalog_file.load(DEMO_FILE.read_text())
    first = await catalog_file.import_catalog(deps.pool, org, data)
    assert (
        first.created["services"] == 12
        and first.created["staff"] == 3
        and first.created["faq"] == 5
    )
    counts = await _counts(deps, org)
    second = await catalog_file.import_catalog(deps.pool, org, data)
    assert not second.changed, str(second)
    assert await _counts(deps, org) == counts


async def test_an_edited_entry_is_updated_and_its_embedding_cleared(deps, make_org):
    org = await make_org()
    data = catalog_file.load(DEMO_FILE.read_text())
    await catalog_file.import_catalog(deps.pool, org, data)
    await catalog.set_embedding(
        deps.pool,
        org,
        "services",
        (await catalog.find_service(deps.pool, org, "limpieza facial")).id,
        [0.1] * 384,
    )
    facial = next(s for s in data["services"] if s["name"] == "Limpieza facial")
    facial.update(price=130000, description="Limpieza profunda con vapor.", staff=["Laura Gómez"])
    data["faq"][1]["a"] = "Solo efectivo."
    data["staff"][0]["hours"] = {"mon": "08:00-12:00"}
    report = await catalog_file.import_catalog(deps.pool, org, data)
    assert report.updated == {"services": 1, "service staff": 1, "faq": 1, "staff hours": 1}
    found = await catalog.find_service(deps.pool, org, "limpieza facial")
    assert found.price == 130000 and found.description == "Limpieza profunda con vapor."
    assert await deps.pool.fetchval(
        "select embedding is null from services where id = $1::uuid", found.id
    )
    assert (
        await deps.pool.fetchval(
            "select count(*) from services where organization_id = $1::uuid", org
        )
        == 12
    )
    exported = catalog_export.export_catalog
    again = catalog_file.load(catalog_export.dump(await exported(deps.pool, org)))
    assert not (
        await catalog_file.import_catalog(deps.pool, org, again)
    ).changed  # export round-trips


async def test_a_bad_file_says_where_and_changes_nothing(deps, make_org):
    org = await make_org()
    data = catalog_file.load(DEMO_FILE.read_text())
    data["services"][3]["staff"] = ["Nadie"]
    with pytest.raises(catalog_file.BadCatalog, match=r"services\[3\].*Nadie"):
        await catalog_file.import_catalog(deps.pool, org, data)
    assert (
        await deps.pool.fetchval(
            "select count(*) from services where organization_id = $1::uuid", org
        )
        == 0
    )
    with pytest.raises(catalog_file.BadCatalog, match="unknown section"):
        catalog_file.load("servicios: []")
    with pytest.raises(org_settings.BadSetting, match="reminder_offsets_h"):
        await org_settings.update(deps.pool, org, {"reminder_offsets_h": "mañana"})
    with pytest.raises(org_settings.BadSetting, match="unknown setting 'advisor'"):
        org_settings.parse({"advisor": "1"})
    assert org_settings.parse({"quiet_hours": "21:00-07:00", "reminder_offsets_h": "2, 24"}) == {
        "quiet_hours": {"start": "21:00", "end": "07:00"},
        "reminder_offsets_h": [24.0, 2.0],
    }


async def _counts(deps, org):
    return [
        await deps.pool.fetchval(f"select count(*) from {t} where organization_id = $1::uuid", org)
        for t in (
            "services",
            "staff",
            "staff_hours",
            "staff_services",
            "business_hours",
            "knowledge_entries",
            "closures",
            "staff_time_off",
        )
    ]


async def test_the_catalog_and_org_commands(deps, make_org, tmp_path):
    from tests.test_ops import cli

    org = await make_org()
    first = cli(deps.settings, "catalog", "import", str(DEMO_FILE), "--org", org)
    assert first.returncode == 0 and "12 services" in first.stdout, first.stderr
    again = cli(deps.settings, "catalog", "import", str(DEMO_FILE), "--org", org)
    assert again.returncode == 0 and again.stdout.strip() == "created nothing; updated nothing"
    exported = cli(deps.settings, "catalog", "export", "--org", org)
    (tmp_path / "clinic.yaml").write_text(exported.stdout.replace("price: 120000", "price: 125000"))
    edited = cli(deps.settings, "catalog", "import", str(tmp_path / "clinic.yaml"), "--org", org)
    assert edited.stdout.strip() == "created nothing; updated 1 services", edited.stdout
    (tmp_path / "bad.yaml").write_text("services: [{name: X, duration_min: soon}]")
    bad = cli(deps.settings, "catalog", "import", str(tmp_path / "bad.yaml"), "--org", org)
    assert bad.returncode == 2 and "services[0] (X): duration_min" in bad.stderr
    done = cli(
        deps.settings,
        "org",
        "set",
        "--org",
        org,
        "advisor_phone=+57 300 123 4567",
        "reminder_offsets_h=48,3",
        "quiet_hours=22:00-06:30",
        "open_on_holidays=yes",
    )
    assert done.returncode == 0, done.stderr
    settings = await deps.pool.fetchval(
        "select settings from organizations where id = $1::uuid", org
    )
    assert (
        settings["advisor_phone"],
        settings["reminder_offsets_h"],
        settings["open_on_holidays"],
    ) == ("573001234567", [48.0, 3.0], True)
    refused = cli(deps.settings, "org", "set", "--org", org, "country=Colombia")
    assert refused.returncode == 2 and "country" in refused.stderr
    nobody = cli(
        deps.settings, "catalog", "export", "--org", "00000000-0000-0000-0000-000000000000"
    )
    assert nobody.returncode == 1 and "no organization" in nobody.stderr
    typo = cli(deps.settings, "catalog", "import", str(DEMO_FILE), "--org", "demo")
    assert typo.returncode == 2 and "not an organization id" in typo.stderr


async def test_catalog_import_refreshes_the_embeddings_of_edited_entries(deps, make_org, tmp_path):
    import asyncio

    from tests.fakes.openai import FakeOpenAI
    from tests.test_ops import cli

    org = await make_org()
    async with FakeOpenAI() as fake:
        # The fake answers on this event loop: the command runs in a thread so the loop stays free.
        env = {
            "EMBEDDING_MODEL": "openai:text-embedding-3-small",
            "OPENAI_BASE_URL": fake.url + "/v1",
            "OPENAI_API_KEY": "k",
        }
        first = await asyncio.to_thread(
            cli, deps.settings, "catalog", "import", str(DEMO_FILE), "--org", org, **env
        )
        assert "embedded 17 entries" in first.stdout, first.stderr  # 12 services and 5 FAQ entries
        again = await asyncio.to_thread(
            cli, deps.settings, "catalog", "import", str(DEMO_FILE), "--org", org, **env
        )
        assert "embedded 0 entries" in again.stdout
        edited = DEMO_FILE.read_text().replace("Nequi y Daviplata", "Nequi, Daviplata y PSE")
        (tmp_path / "clinic.yaml").write_text(edited)
        changed = await asyncio.to_thread(
            cli,
            deps.settings,
            "catalog",
            "import",
            str(tmp_path / "clinic.yaml"),
            "--org",
            org,
            **env,
        )
        assert "updated 1 faq" in changed.stdout and "embedded 1 entries" in changed.stdout
    assert (
        await deps.pool.fetchval(
            "select count(*) from knowledge_entries where organization_id = $1::uuid "
            "and embedding is null",
            org,
        )
        == 0
    )
