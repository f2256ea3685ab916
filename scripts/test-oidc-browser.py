#!/usr/bin/env python3
"""Browser sign-in (issue 14) in a real headless browser: Debian's chromium driven by
chromium-driver through Selenium. One full login against the real OpenID provider
(scripts/oidc/provider.js), the page reached after login kept as a screenshot, then sign-out
through the gateway and the provider.

    scripts/test-oidc-browser.py NGINX MODULE.so

Needs /usr/bin/chromium, /usr/bin/chromedriver (Debian packages chromium, chromium-driver) and
Selenium from PyPI, pinned in scripts/oidc/requirements-browser.txt; scripts/test installs it
into a virtual environment under target/:

    python3 -m venv target/browser-venv
    target/browser-venv/bin/pip install -r scripts/oidc/requirements-browser.txt
    target/browser-venv/bin/python scripts/test-oidc-browser.py NGINX MODULE.so

The provider and nginx are those of scripts/test-oidc.py (its configuration, server `idp`),
under target/oidc-browser/. Artifacts: target/artifacts/oidc-login.png (the page after login),
oidc-signed-out.png (after sign-out).
"""
import importlib.util
import os
import sys
import tempfile
import time
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("test_oidc", os.path.join(HERE, "test-oidc.py"))
T = importlib.util.module_from_spec(spec)
spec.loader.exec_module(T)
T.ROOT = os.path.join(T.REPO, "target", "oidc-browser")
ARTIFACTS = os.path.join(T.REPO, "target", "artifacts")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def browser(profile):
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    # Headless as root on a machine with no network but loopback: no sandbox, no GPU, and
    # none of the background connections Chromium makes at start.
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1000,700", f"--user-data-dir={profile}"):
        o.add_argument(a)
    # The driver is given: Selenium Manager has nothing to download.
    os.environ.setdefault("SE_OFFLINE", "true")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


def main():
    started = time.monotonic()
    import shutil
    shutil.rmtree(T.ROOT, ignore_errors=True)
    os.makedirs(T.ROOT)
    os.makedirs(ARTIFACTS, exist_ok=True)
    port = T.free_port()
    prov = gateway = drv = None
    try:
        prov = T.Provider("main", [port])
        gateway = T.Gateway({"idp": (prov, "gateway", "basic", "30s", prov)}, {"idp": port})
        gateway.start()
        home = f"http://127.0.0.1:{port}"
        profile = tempfile.mkdtemp(prefix="oidc-chromium-", dir=T.ROOT)
        drv = browser(profile)
        wait = WebDriverWait(drv, 15)

        print(f"chromium {drv.capabilities.get('browserVersion')}, provider {prov.issuer}, gateway {home}")
        drv.get(f"{home}/welcome")
        wait.until(EC.presence_of_element_located((By.NAME, "login")))
        T.check(drv.current_url.startswith(prov.issuer + "/interaction/"),
                f"first visit: the browser is at the provider's login page ({drv.current_url[:60]})")
        drv.find_element(By.NAME, "login").send_keys("alice")
        drv.find_element(By.NAME, "password").send_keys("wonderland")
        drv.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "prompt" in d.page_source and "consent" in d.page_source
                   or d.current_url.startswith(home))
        if not drv.current_url.startswith(home):
            T.check(True, "consent page shown")
            drv.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(EC.presence_of_element_located((By.ID, "user")))
        T.check(drv.current_url == f"{home}/welcome",
                f"after login: back on the page first asked for ({drv.current_url})")
        T.check(drv.find_element(By.ID, "user").text == "user: alice",
                f"the upstream saw the user ({drv.find_element(By.ID, 'user').text})")
        T.check(drv.find_element(By.ID, "email").text == "email: alice@example.test",
                "and the email claim")
        shot = os.path.join(ARTIFACTS, "oidc-login.png")
        drv.save_screenshot(shot)
        T.check(os.path.getsize(shot) > 1000, f"screenshot of the page after login: {shot}")
        cookies = {c["name"]: c for c in drv.get_cookies()}
        s = cookies.get("gw_session")
        T.check(s is not None and s.get("httpOnly") and s.get("sameSite") == "Lax",
                f"the browser holds the session cookie, HttpOnly, SameSite=Lax ({s and {k: s[k] for k in ('httpOnly', 'sameSite', 'path')}})")
        T.check("gw_session_state" not in cookies, "no state cookie left")
        drv.get(f"{home}/welcome")
        T.check(drv.find_element(By.ID, "user").text == "user: alice", "reload: still signed in")

        # sign out: the page's POST button, then the provider's confirmation
        drv.find_element(By.ID, "signout").click()
        wait.until(lambda d: d.current_url.startswith(prov.issuer))
        T.check("/session/end" in drv.current_url, f"sign-out: at the provider's end_session_endpoint ({drv.current_url[:60]})")
        drv.find_element(By.CSS_SELECTOR, "button[name=logout][value=yes]").click()
        wait.until(lambda d: d.current_url.startswith(home))
        T.check(urllib.parse.urlsplit(drv.current_url).path == "/signed-out",
                f"back at post_logout_redirect_uri ({drv.current_url})")
        drv.save_screenshot(os.path.join(ARTIFACTS, "oidc-signed-out.png"))
        T.check("gw_session" not in {c["name"] for c in drv.get_cookies()}, "the session cookie is gone")
        drv.get(f"{home}/welcome")
        wait.until(EC.presence_of_element_located((By.NAME, "login")))
        T.check(drv.current_url.startswith(prov.issuer), "the next visit asks to sign in again")
    except TimeoutException as e:
        shot = os.path.join(ARTIFACTS, "oidc-browser-failure.png")
        if drv:
            drv.save_screenshot(shot)
        T.check(False, f"the browser did not get where expected ({e.msg or 'timeout'}; at "
                       f"{drv.current_url if drv else '?'}; screenshot {shot})")
    finally:
        if drv:
            drv.quit()
        if gateway and hasattr(gateway, "proc"):
            gateway.stop()
        if prov:
            prov.stop()
    log = gateway.read("error.log") if gateway else ""
    bad = [l for l in log.splitlines() if "[alert]" in l or "[emerg]" in l or "[crit]" in l
           or "exited on signal" in l]
    T.check(not bad, f"error.log: no alert/crit/emerg/crash {bad[:3]}")
    if T.FAILED:
        print(f"\n{len(T.FAILED)} check(s) failed (files under {T.ROOT})")
        sys.exit(1)
    print(f"\nbrowser sign-in passed in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
