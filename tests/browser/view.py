#!/usr/bin/env python3
"""jam capture --web in a real browser: Debian's chromium, headless, driven by selenium.

Usage: tests/browser/view.py --url URL --query 'COMMAND ...' --downloads DIR [--screenshot PNG]

Opens the page, checks that it loads with no console error, runs the query command (a client
asking the server for the time, from another machine or here), and checks, as a student would
see them:
  - the exchange's rows appear: SYN, SYN-ACK, ACK, the TIME segment, the JAM reply, both FINs;
  - clicking a row shows that frame's detail;
  - the Flow tab draws one arrow per segment of the session;
  - the pcap download link saves a file (the caller opens it in tshark).
Prints `figure:` lines (the delay from the wire to the page, per row) and `downloaded: PATH`.
Exits 1 with the reason on the first thing that is wrong. tests/jam/web.rs runs it.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look anything up online.

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TIMEOUT = 20  # seconds for anything to appear: catches a hang, never a measure of speed


def fail(why):
    print(f"FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def browser(downloads):
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("JAM_CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,860", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update"):
        options.add_argument(flag)
    options.set_capability("goog:loggingOptions", {"browser": "ALL"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": downloads,
                                              "download.prompt_for_download": False})
    service = Service(os.environ.get("JAM_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return driver


def rows(driver):
    return driver.execute_script("""
        return [...document.querySelectorAll('#rows tr')].map(tr => ({
            n: +tr.dataset.n, s: +tr.dataset.s, wire: +tr.dataset.wire, shown: +tr.dataset.shown,
            colour: tr.className, cells: [...tr.cells].map(c => c.textContent)}));""")


def wait(driver, what, test):
    try:
        return WebDriverWait(driver, TIMEOUT, poll_frequency=0.05).until(lambda d: test(d))
    except Exception:
        fail(f"{what} did not happen within {TIMEOUT} s; rows: {json.dumps(rows(driver), indent=1)}")


def errors(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--query", required=True, help="the command that asks the server for the time")
    ap.add_argument("--downloads", required=True)
    ap.add_argument("--screenshot")
    args = ap.parse_args()

    driver = browser(args.downloads)
    try:
        driver.get(args.url)
        wait(driver, "the page's live state", lambda d: d.find_element(By.ID, "state").text == "live")
        if errors(driver):
            fail(f"console errors on load: {errors(driver)}")

        live_at = time.time() * 1000
        subprocess.run(shlex.split(args.query), check=True, timeout=TIMEOUT, stdout=subprocess.DEVNULL)

        def exchange(d):
            infos = [r["cells"][6] for r in rows(d)]
            fins = [i for i in infos if "FIN" in i]
            return len(fins) >= 2 and infos
        infos = wait(driver, "the exchange's rows (SYN to both FINs)", exchange)
        got = rows(driver)
        wanted = [("[SYN]", "the SYN"), ("[SYN, ACK]", "the SYN-ACK"), ("Len=6", "the TIME segment"),
                  ("Len=14", "the JAM reply")]
        for needle, name in wanted:
            if not any(needle in i for i in infos):
                fail(f"no row for {name} ({needle}): {infos}")
        if not ("[ACK]" in infos[2] and "Len=0" in infos[2]):
            fail(f"the third row is not the handshake's ACK: {infos[:3]}")
        if not all(r["cells"][4] == "TCP" for r in got):
            fail("a row's protocol is not TCP")
        if "k-synfin" not in got[0]["colour"]:
            fail(f"the SYN is not coloured as Wireshark colours SYN/FIN: {got[0]['colour']}")
        # Rows that passed after the page was live: the backlog it was sent on loading is older.
        delays = sorted(r["shown"] - r["wire"] for r in got if r["wire"] >= live_at)
        print(f"figure: wire to page, {len(delays)} rows: median {delays[len(delays) // 2]:.1f} ms, "
              f"max {delays[-1]:.1f} ms")

        # A row's detail.
        reply = next(r for r in got if "Len=14" in r["cells"][6])
        row = driver.find_element(By.CSS_SELECTOR, f'#rows tr[data-n="{reply["n"]}"]')
        # Into view first: the list follows the newest rows, and its header would take the click.
        driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'nearest'})", row)
        row.click()
        detail = wait(driver, "the clicked row's detail",
                      lambda d: d.find_element(By.ID, "detail").text.startswith(f"Frame {reply['n']}:")
                      and d.find_element(By.ID, "detail").text)
        for layer in ("Internet Protocol Version 4", "Transmission Control Protocol", "JAM "):
            if layer not in detail:
                fail(f"the detail has no {layer!r}: {detail}")

        if args.screenshot:
            driver.save_screenshot(args.screenshot)

        # The flow of the clicked row's session: one arrow per segment. The session's last ACK
        # may still be on its way, so both are read until they agree (the page redraws the flow
        # as its session's rows arrive).
        driver.find_element(By.ID, "tabFlow").click()

        def flow(d):
            arrows = len(d.find_elements(By.CSS_SELECTOR, "#svg line.segment"))
            segments = len([r for r in rows(d) if r["s"] == reply["s"]])
            return arrows and arrows == segments and (arrows, segments)
        arrows, segments = wait(driver, "one arrow per segment of the session in the flow", flow)
        print(f"flow: {arrows} arrows for {segments} segments")
        if args.screenshot:
            base, ext = os.path.splitext(args.screenshot)
            driver.save_screenshot(f"{base}-flow{ext}")

        # The capture, downloaded through the page's link.
        driver.find_element(By.ID, "getPcap").click()
        deadline = time.time() + TIMEOUT
        while time.time() < deadline:
            done = [f for f in os.listdir(args.downloads) if f.endswith(".pcap")]
            if done:
                print(f"downloaded: {os.path.join(args.downloads, done[0])}")
                break
            time.sleep(0.1)
        else:
            fail(f"no pcap was downloaded into {args.downloads}: {os.listdir(args.downloads)}")

        if errors(driver):
            fail(f"console errors: {errors(driver)}")
        print(f"page: {len(got)} rows, no console error")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
