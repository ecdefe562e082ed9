#!/usr/bin/env python3
"""The status page in headless Chromium against a running Ferry under load (the caller runs the
load): waits until the loaded route's rate is above zero, kills backend `app` (whose restarts then
fail: FLAG_FILE) and waits until the page shows it not ready, opens a WebSocket and reloads with new workers so that
a generation drains, waits until the page shows it; screenshot at the end. Prints one JSON object;
exit 0 when every step was seen. Every wait is bounded.

Usage: status_page_test.py ADMIN_URL SCREENSHOT FERRY CONTROL_SOCKET FLAG_FILE HTTPS_PORT CAFILE HOLD_SCRIPT
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

admin, screenshot, ferry, control, flag, https_port, cafile, hold = sys.argv[1:9]
options = webdriver.ChromeOptions()
for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1300"):
    options.add_argument(argument)
binary = shutil.which("chromium") or shutil.which("chromium-browser")
if binary:
    options.binary_location = binary
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
result = {"ok": False}
holder = None


def wait_for(what, check, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"not seen within {seconds} s: {what}")


def attribute(selector, name):
    # In the page, in one step: the page redraws its tables every second, so an element found
    # first and read later may be gone.
    return driver.execute_script(
        "const element = document.querySelector(arguments[0]);"
        " return element ? element.getAttribute(arguments[1]) : null;", selector, name)


try:
    driver.set_page_load_timeout(30)
    driver.get(admin)
    rate = wait_for("a request rate on /app/",
                    lambda: (lambda value: value if value and float(value) > 0 else None)(
                        attribute('tr[data-route="/app/"]', "data-rps")))
    result["app_rps"] = float(rate)
    result["sparkline_points"] = int(attribute("svg.spark", "data-points") or 0)

    status = json.load(urllib.request.urlopen(admin.rstrip("/") + "/status.json", timeout=5))
    pid = next(b["pid"] for b in status["backends"] if b["name"] == "app")
    open(flag, "w").close()
    os.kill(pid, signal.SIGKILL)
    state = wait_for("backend app shown not ready",
                     lambda: (lambda value: value if value and value not in ("ready", "starting") else None)(
                         attribute('[data-backend="app"]', "data-state")))
    result["app_state_after_kill"] = state

    holder = subprocess.Popen([sys.executable, hold, https_port, cafile, "60"], stdout=subprocess.PIPE, text=True)
    opened = holder.stdout.readline().strip()
    result["websocket"] = opened
    reload = subprocess.run([ferry, "reload", "--restart-workers", "--socket", control], capture_output=True, text=True, timeout=60)
    result["reload"] = reload.stdout.strip()
    draining = wait_for("a draining generation", lambda: driver.execute_script(
        "const element = document.querySelector('[data-draining-generation]');"
        " return element ? [element.getAttribute('data-draining-generation'),"
        " element.getAttribute('data-connections-left')] : null;"))
    result["draining_generation"] = draining[0]
    result["connections_left"] = int(draining[1] or 0)
    result["updated_ok"] = attribute("#updated", "data-ok")
    time.sleep(1.5)
    driver.save_screenshot(screenshot)
    errors = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    result["console_errors"] = [entry.get("message") for entry in errors]
    result["ok"] = not errors
except Exception as error:
    result["error"] = f"{type(error).__name__}: {error}"
    try:
        driver.save_screenshot(screenshot)
    except Exception:
        pass
finally:
    if holder is not None and holder.poll() is None:
        holder.kill()
    driver.quit()
print(json.dumps(result), flush=True)
sys.exit(0 if result["ok"] else 1)
