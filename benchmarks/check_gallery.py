"""Render a report gallery (report.html) in headless Chromium: screenshot it
and check that every image loads.

    .venv/bin/python benchmarks/check_gallery.py REPORT_HTML [--screenshot PNG]

Chromium loads a copy of the page with one added script that, once the page
has loaded, lists the images whose decoded width is 0 (broken); the DOM
Chromium dumps carries that list. The original page is then screenshot at
1400 px wide. Prints the number of images, the broken ones and the seconds
each Chromium run took; exits 1 if an image is broken. Needs ``chromium`` (or
``chromium-browser`` / ``google-chrome``) on PATH: ``apt-get install chromium``.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter(img => !img.complete || img.naturalWidth === 0).map(img => img.alt);
  const out = document.createElement("pre");
  out.id = "image-check";
  out.textContent = JSON.stringify({images: images.length, broken: broken});
  document.body.appendChild(out);
});
</script>"""
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--virtual-time-budget=20000")


def chromium_binary() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    return next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)


def _chromium(*args, timeout: float = 120) -> tuple[str, float]:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gallery-chromium-") as profile:
        result = subprocess.run([chromium_binary(), *FLAGS, f"--user-data-dir={profile}", *args],
                                capture_output=True, text=True, timeout=timeout, check=True)
    return result.stdout, time.perf_counter() - start


def render(html_path: str | Path, screenshot: str | Path) -> dict:
    """Load ``html_path`` in headless Chromium; returns {'images': n, 'broken':
    [alt of each broken image], 'check_s', 'screenshot_s'} and writes the
    screenshot (1400 px wide, the first 6000 px of the page)."""
    html_path, screenshot = Path(html_path).resolve(), Path(screenshot).resolve()
    page = html_path.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="gallery-check-") as folder:
        checked = Path(folder) / html_path.name
        checked.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>", 1), encoding="utf-8")
        dom, check_s = _chromium("--dump-dom", checked.as_uri())
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom, re.S)
    if found is None:
        raise RuntimeError("the page did not finish loading in Chromium (no image check in the dumped DOM)")
    result = json.loads(found[1].replace("&quot;", '"'))
    _, screenshot_s = _chromium(f"--screenshot={screenshot}", "--window-size=1400,6000", html_path.as_uri())
    return dict(result, check_s=check_s, screenshot_s=screenshot_s)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", help="the report.html that analysis/report.py wrote")
    parser.add_argument("--screenshot", default=None, help="screenshot PNG [default: beside the page]")
    args = parser.parse_args(argv)
    if chromium_binary() is None:
        sys.exit("error: no chromium on PATH: apt-get install chromium")
    screenshot = args.screenshot or Path(args.html).with_suffix(".screenshot.png")
    result = render(args.html, screenshot)
    print(f"{result['images']} images, broken: {result['broken'] or 'none'}; "
          f"image check {result['check_s']:.1f} s, screenshot {result['screenshot_s']:.1f} s -> {screenshot}")
    sys.exit(1 if result["broken"] or not result["images"] else 0)


if __name__ == "__main__":
    main()
