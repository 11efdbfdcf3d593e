"""The chat page of `make run`, in a real headless Chromium driven by Selenium: a booking made
by typing into the page lands in the appointments table, and beside each reply the page says
which expert and which tools handled the turn."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from zoneinfo import ZoneInfo


from ops.app.wiring import running_system
from ops.deps import Deps
from ops.settings import ALL_ROLES
from tests.browser import headless_chromium, needs_chromium

pytestmark = needs_chromium

# A Wednesday morning in the clinic's timezone, so "mañana en la tarde" is a Thursday with free
# afternoon slots whatever day the test runs. It is in the past: the webhooks the page sends
# carry the real time, and the 24-hour window must be open at the system's clock.
START = datetime(2026, 3, 4, 10, 0, tzinfo=ZoneInfo("America/Bogota"))
PHONE = "573005550101"


def chat_in_browser(url: str, app: str, user_data_dir: str) -> list[tuple[str, str, str]]:
    """Type the booking into the page; the (reply, experts, tools) rows it shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium(user_data_dir) as driver:
        driver.get(url + "/")
        for field, value in (("app", app), ("phone", PHONE)):
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(value)

        def say(text: str) -> None:
            before = len(driver.find_elements(By.CSS_SELECTOR, "#log .bot"))
            driver.find_element(By.ID, "text").send_keys(text, Keys.ENTER)
            WebDriverWait(driver, 45).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log .bot")) > before
            )

        # The page sends the name "Visitante" with each message (WhatsApp's profile name), so
        # the clinic knows it and books at once.
        for text in ("quiero una cita para limpieza facial mañana en la tarde", "la primera"):
            say(text)
        rows = []
        for row in driver.find_elements(By.CSS_SELECTOR, "#log .row"):
            handled = row.find_element(By.CSS_SELECTOR, ".handled")
            rows.append(
                (
                    row.find_element(By.CSS_SELECTOR, ".bot").text,
                    handled.get_attribute("data-experts"),
                    handled.get_attribute("data-tools"),
                )
            )
        return rows


async def test_a_booking_typed_into_the_chat_page_lands_in_the_appointments_table(
    settings, deps, make_org, tmp_path
):
    org = await make_org("PageClinic", catalog=True)
    started = time.time()
    # The local Gupshup simulator; a generous wait for the reply on a busy machine.
    page_settings = settings.model_copy(update={"gupshup_api_url": None, "chat_wait_s": 30})
    page_deps = Deps(
        settings=page_settings,
        redis=deps.redis,
        pool=deps.pool,
        http=deps.http,
        clock=lambda: START.timestamp() + time.time() - started,
    )
    async with running_system(page_settings, ALL_ROLES, deps=page_deps) as system:
        rows = await asyncio.to_thread(
            chat_in_browser, system.url, "PageClinic", str(tmp_path / "chromium")
        )
    booked = await deps.pool.fetch(
        "select s.name, c.name as contact, a.starts_at from appointments a "
        "join services s on s.id = a.service_id join contacts c on c.id = a.contact_id "
        "where a.organization_id = $1::uuid and a.status = 'confirmed'",
        org,
    )
    assert [(b["name"], b["contact"]) for b in booked] == [("Limpieza facial", "Visitante")], rows
    assert booked[0]["starts_at"].astimezone(START.tzinfo).date().isoformat() == "2026-03-05"
    offer, confirmation, *later = rows
    assert all(
        "Cita confirmada" in row[0] for row in later
    )  # the scheduler's confirmation, if seen
    assert "1. jueves 5 de marzo" in offer[0]
    assert offer[1:] == ("appointment", "check_availability")
    assert "Visitante" in confirmation[0] and "jueves 5 de marzo" in confirmation[0]
    assert confirmation[1] == "appointment" and "book_appointment" in confirmation[2].split(",")
