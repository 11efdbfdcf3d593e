"""The inbox page (/inbox) in a real headless Chromium driven by Selenium, end to end: a customer
asks for a person (webhook through the fake Gupshup); the chat appears in the inbox; staff
answers and the customer receives it; staff hands back; the customer's next message is answered
by the bot, whose context holds what the staff said."""

from __future__ import annotations

import asyncio
import time


from storage import memory, operators
from tests.helpers import post_webhook, text_webhook
from tests import clock
from tests.browser import headless_chromium, needs_chromium

pytestmark = needs_chromium

PHONE = "573005550102"
ADVISOR = "573009998877"
ANSWER = "Hola Laura, soy Ana de la clínica: te llamo en 5 minutos."
WAIT_S = 45  # a generous bound for a busy machine; every wait ends on an event, not a sleep


class Customer:
    """The customer, writing through the webhook from the browser's thread: each call runs on
    the test's event loop and returns once the fake Gupshup got what the pipeline sent back."""

    def __init__(self, loop: asyncio.AbstractEventLoop, url: str, gupshup) -> None:
        self.loop, self.url, self.gupshup = loop, url, gupshup

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT_S + 5)

    def says(self, text: str, expect: int) -> list[str]:
        return self._run(self._says(text, expect))

    async def _says(self, text: str, expect: int) -> list[str]:
        before = len(self.gupshup.sent)
        await post_webhook(
            self.url,
            text_webhook(
                "InboxClinic", PHONE, text, f"c-{time.time_ns()}", clock.now_ms(), name="Laura"
            ),
        )
        sent = await self.gupshup.wait_for_sent(before + expect, timeout_s=WAIT_S)
        return [
            m.message.get("text", "") for m in sent[before:] if m.destination == PHONE and m.message
        ]

    def receives(self, text: str) -> None:
        self._run(self._receives(text))

    async def _receives(self, text: str) -> None:
        n = 0
        while True:  # each wait ends when the fake Gupshup gets one more message
            sent = await self.gupshup.wait_for_sent(n + 1, timeout_s=WAIT_S)
            if any(m.destination == PHONE and (m.message or {}).get("text") == text for m in sent):
                return
            n = len(sent)


def inbox_in_browser(url: str, token: str, customer: Customer, user_data_dir: str) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    seen: dict = {}
    with headless_chromium(user_data_dir) as driver:
        wait = WebDriverWait(driver, WAIT_S)
        driver.get(url + "/inbox")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "save-token").click()
        wait.until(lambda d: d.find_element(By.ID, "me").text == "Ana")

        seen["escalation"] = customer.says("quiero hablar con una persona", expect=2)
        row = f'#chats li[data-phone="{PHONE}"][data-needs-person="true"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        seen["listed"] = driver.find_element(By.CSS_SELECTOR, row).text
        driver.find_element(By.CSS_SELECTOR, row).click()
        wait.until(
            lambda d: d.find_element(By.ID, "state").get_attribute("data-bot-enabled") == "false"
        )
        seen["state"] = driver.find_element(By.ID, "state").text

        driver.find_element(By.ID, "text").send_keys(ANSWER)
        driver.find_element(By.ID, "send").click()
        customer.receives(ANSWER)
        wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '#messages .msg[data-author="staff:Ana"]')
        )

        driver.find_element(By.ID, "handback").click()
        wait.until(
            lambda d: d.find_element(By.ID, "state").get_attribute("data-bot-enabled") == "true"
        )
        seen["after_handback"] = customer.says("¿cuánto cuesta la limpieza facial?", expect=1)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#messages .msg[data-author="bot"]'))
        seen["authors"] = [
            m.get_attribute("data-author")
            for m in driver.find_elements(By.CSS_SELECTOR, "#messages .msg")
        ]
        return seen


async def test_staff_answer_and_hand_back_from_the_inbox_page(
    deps, make_org, system, gupshup, tmp_path
):
    org = await make_org(
        "InboxClinic",
        catalog=True,
        settings={"advisor_phone": ADVISOR, "escalation_template_id": "tmpl-advisor"},
    )
    _, token = await operators.add(deps.pool, org, "Ana")
    async with system(debounce_seconds=0.1) as s:
        customer = Customer(asyncio.get_running_loop(), s.url, gupshup)
        seen = await asyncio.to_thread(
            inbox_in_browser, s.url, token, customer, str(tmp_path / "chromium")
        )
    assert "necesita una persona" in seen["listed"], seen
    assert "Atendido por una persona" in seen["state"], seen
    assert seen["after_handback"] and "Limpieza facial" in seen["after_handback"][0], seen
    authors = seen["authors"]
    assert authors[0] == "customer" and authors.index("staff:Ana") < len(authors) - 2, authors
    assert authors[-2:] == ["customer", "bot"], authors
    # The bot's turn after the hand-back read the staff's answer as the clinic's words.
    recent = await memory.recent_messages(deps.redis, deps.pool, org, PHONE, 10)
    assert ("staff", ANSWER) in recent
