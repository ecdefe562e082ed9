#!/usr/bin/env python3
"""A real browser on the demo page through Ferry: headless Chromium (Selenium) loads
BASE_URL, clicks Speak, and waits until the page reports the sha256-verified download and the
<audio> element has loaded it. Saves a screenshot. Prints JSON (with the protocol of each fetch);
exit 0 on success.

Usage: demo_test.py BASE_URL SCREENSHOT_PATH
"""
import json
import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base_url, screenshot = sys.argv[1], sys.argv[2]
options = webdriver.ChromeOptions()
for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--ignore-certificate-errors",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1000,900"):
    options.add_argument(argument)
options.accept_insecure_certs = True
binary = shutil.which("chromium") or shutil.which("chromium-browser")
if binary:
    options.binary_location = binary
service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
driver = webdriver.Chrome(service=service, options=options)
result = {"ok": False}
try:
    driver.set_page_load_timeout(30)
    driver.get(base_url)
    driver.find_element(By.ID, "speak").click()
    deadline = time.time() + 30
    while time.time() < deadline:
        verified = driver.find_element(By.ID, "verified").get_attribute("data-verified")
        ready = driver.execute_script(
            "const a = document.getElementById('player'); return [a.readyState, a.duration || 0];")
        if verified == "true" and (ready[0] >= 2 or ready[1] > 0):
            result = {"ok": True, "readyState": ready[0], "duration": ready[1]}
            break
        time.sleep(0.2)
    result["status"] = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#status li")]
    # The protocol each fetch went over (ALPN's choice): "h2" when Ferry offers HTTP/2.
    result["protocols"] = driver.execute_script(
        "return performance.getEntries().filter(e => e.nextHopProtocol)"
        ".map(e => [e.name.replace(location.origin, ''), e.nextHopProtocol]);")
    driver.save_screenshot(screenshot)
finally:
    driver.quit()
print(json.dumps(result))
sys.exit(0 if result["ok"] else 1)
