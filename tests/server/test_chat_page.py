"""The chat page at / in headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium): send a message, see a streamed reply and the tokens/s line."""
import shutil

import pytest

from conftest import SANITIZED

pytestmark = pytest.mark.skipif(SANITIZED, reason="browser test runs in the Release build")


def test_chat_page_streams_a_reply(server):
    if not shutil.which("chromedriver") or not shutil.which("chromium"):
        pytest.fail("chromium/chromium-driver not installed (scripts/setup.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        drv.get(server.url + "/")
        assert "g4 chat" in drv.title
        drv.find_element(By.ID, "maxtok").clear()
        drv.find_element(By.ID, "maxtok").send_keys("12")
        drv.find_element(By.ID, "temp").clear()
        drv.find_element(By.ID, "temp").send_keys("0")
        drv.find_element(By.ID, "input").send_keys("Say hello.")
        drv.find_element(By.ID, "send").click()
        WebDriverWait(drv, 120).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".assistant[data-done='1']")
            or d.find_elements(By.CSS_SELECTOR, ".err"))
        assert not drv.find_elements(By.CSS_SELECTOR, ".err"), drv.find_element(By.CSS_SELECTOR, ".err").text
        reply = drv.find_element(By.CSS_SELECTOR, ".assistant").text
        assert reply.startswith("Model: ") and len(reply) > len("Model: ")
        assert "tokens/s" in drv.find_element(By.ID, "stats").text
    finally:
        drv.quit()
