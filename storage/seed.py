"""The demo clinic: a Spanish-speaking spa in Bogotá, so `make run` has something to talk about."""

from __future__ import annotations

from datetime import time

import asyncpg

from storage.orgs import add_org, find_connection

DEMO_APP = "DemoClinic"

SERVICES = [
    # name, description, minutes, price (COP)
    ("Limpieza facial", "Limpieza facial profunda con extracción y mascarilla hidratante.", 60, 120000),
    ("Masaje relajante", "Masaje corporal relajante con aceites esenciales.", 60, 150000),
    ("Masaje descontracturante", "Masaje terapéutico para aliviar tensión muscular en espalda y cuello.", 60, 170000),
    ("Peeling químico", "Renovación de la piel con ácidos suaves para manchas y textura.", 45, 180000),
    ("Hidratación facial", "Tratamiento intensivo de hidratación con ácido hialurónico.", 45, 110000),
    ("Depilación con cera piernas", "Depilación completa de piernas con cera tibia.", 45, 70000),
    ("Depilación láser axilas", "Sesión de depilación láser en axilas.", 30, 90000),
    ("Manicure spa", "Manicure con exfoliación, hidratación y esmaltado.", 45, 45000),
    ("Pedicure spa", "Pedicure con exfoliación, hidratación y esmaltado.", 60, 55000),
    ("Microdermoabrasión", "Exfoliación mecánica con puntas de diamante para una piel uniforme.", 45, 160000),
    ("Radiofrecuencia facial", "Tratamiento reafirmante con radiofrecuencia.", 50, 200000),
    ("Valoración estética", "Consulta de valoración con la especialista para definir tu tratamiento.", 30, 0),
]

STAFF = [("Laura Gómez", "Cosmetóloga"), ("Andrés Rojas", "Masajista"), ("Camila Torres", "Esteticista")]

# weekday (0 = Monday), opens, closes
HOURS = [(d, time(8), time(18)) for d in range(5)] + [(5, time(9), time(14))]

FAQ = [
    ("¿Dónde están ubicados?", "Estamos en la Calle 93 # 12-45, Chicó, Bogotá. Hay parqueadero para clientes."),
    ("¿Qué medios de pago aceptan?", "Aceptamos efectivo, tarjetas débito y crédito, Nequi y Daviplata."),
    ("¿Cuál es la política de cancelación?", "Puedes cancelar o reprogramar sin costo hasta 24 horas antes de tu cita."),
    ("¿Atienden los domingos?", "No, los domingos y festivos estamos cerrados."),
    ("¿Necesito preparación para la limpieza facial?", "Ven sin maquillaje y evita exfoliantes 48 horas antes."),
]


async def seed_demo(pool: asyncpg.Pool, *, api_key: str = "demo-key",
                    source_phone: str = "573009990000", webhook_token: str | None = "demo-token",
                    app_name: str = DEMO_APP) -> str:
    """Create the demo clinic once; returns its organization id (the existing one if seeded)."""
    existing = await find_connection(pool, app_name=app_name)
    if existing:
        return existing.org_id
    org = await add_org(pool, name="Clínica Estética Demo", app_name=app_name, api_key=api_key,
                        source_phone=source_phone, webhook_token=webhook_token,
                        timezone="America/Bogota",
                        settings={"locale": "es-CO", "currency": "COP",
                                  "advisor_phone": "573001234567",
                                  "escalation_template_id": "demo-escalation-template",
                                  "reengagement_template_id": "demo-reengagement-template"})
    await seed_catalog(pool, org)
    return org


async def seed_catalog(pool: asyncpg.Pool, org: str) -> None:
    """The demo clinic's services, staff, weekly hours and FAQ, for an existing organization."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "insert into services (organization_id, name, description, duration_minutes, price)"
            " values ($1::uuid, $2, $3, $4, $5)", [(org, *s) for s in SERVICES])
        await conn.executemany(
            "insert into staff (organization_id, name, role) values ($1::uuid, $2, $3)",
            [(org, *s) for s in STAFF])
        await conn.executemany(
            "insert into business_hours (organization_id, weekday, opens, closes)"
            " values ($1::uuid, $2, $3, $4)", [(org, *h) for h in HOURS])
        await conn.executemany(
            "insert into knowledge_entries (organization_id, question, answer)"
            " values ($1::uuid, $2, $3)", [(org, *f) for f in FAQ])
