"""Render a `losskit compare` report.html in headless Chromium and save a full-page PNG
(the README's screenshot): python docs/screenshot_report.py losskit-report/report.html docs/compare-report.png

Needs Debian's chromium and the test extra (playwright).
"""

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

path, out = str(Path(sys.argv[1]).resolve()), sys.argv[2]
with sync_playwright() as p:
    b = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
        ],
    )
    page = b.new_page(viewport={"width": 1280, "height": 900})
    page.goto("file://" + path)
    page.screenshot(path=out, full_page=True)
    b.close()
