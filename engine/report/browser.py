"""Look at a report in a real browser: headless Chromium loads the HTML, says what it shows
(the verdict, the tables, every image and whether it decoded) and takes screenshots.

The report itself has no script. A copy of it gets a small one that, once the page has loaded,
writes what the browser laid out into the DOM as JSON; ``chromium --headless --dump-dom`` prints
that DOM. ``--screenshot`` then draws the whole page, which is cut into the verdict with its
gates, a stage table and each figure (Pillow, which matplotlib already needs).

    python -m engine.report.browser reports/<run>.html /tmp/screens
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome",
            "headless_shell")
INSTALL = "apt-get install -y chromium"

PROBE = """<script>
window.addEventListener('load', function () {
  function rect(el) {
    var r = el.getBoundingClientRect();
    return [Math.round(r.left + window.scrollX), Math.round(r.top + window.scrollY),
            Math.round(r.width), Math.round(r.height)];
  }
  var out = {
    title: document.title,
    verdict: (document.getElementById('verdict') || {}).textContent || null,
    height: document.documentElement.scrollHeight,
    width: document.documentElement.scrollWidth,
    headings: Array.from(document.querySelectorAll('h2, h3')).map(function (h) {
      return [h.tagName.toLowerCase(), h.textContent, rect(h)]; }),
    tables: Array.from(document.querySelectorAll('table')).map(function (t) {
      return {title: t.getAttribute('data-title'), rows: t.tBodies[0] ? t.tBodies[0].rows.length : 0,
              rect: rect(t)}; }),
    images: Array.from(document.images).map(function (i) {
      var f = i.closest('figure');
      return {alt: i.alt, figure: f ? f.getAttribute('data-figure') : null, complete: i.complete,
              width: i.naturalWidth, height: i.naturalHeight, rect: rect(f || i)}; }),
    warnings: Array.from(document.querySelectorAll('.warning')).map(function (w) {
      return w.textContent; }),
    verdict_rect: document.getElementById('verdict') ? rect(document.getElementById('verdict')) : null
  };
  var pre = document.createElement('pre');
  pre.id = 'acbo-probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def find_browser() -> str | None:
    """The first headless-capable Chromium on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="acbo-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--no-first-run", "--disable-extensions",
               f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def inspect(page: Path, browser: str | None = None, timeout: float = 120.0, width: int = 1280) -> dict:
    """What Chromium laid out for the HTML file `page` in a window `width` px wide (see PROBE):
    verdict, headings, tables, images (naturalWidth 0: broken), warnings, page size."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found ({', '.join(BROWSERS)}); install it: {INSTALL}")
    text = Path(page).read_text(encoding="utf-8")
    probed = text.replace("</body>", PROBE + "\n</body>", 1)
    with tempfile.TemporaryDirectory(prefix="acbo-probe-") as tmp:
        copy = Path(tmp) / Path(page).name
        copy.write_text(probed, encoding="utf-8")
        result = _run(browser, [f"--window-size={width},1000", "--virtual-time-budget=10000",
                                "--dump-dom", copy.as_uri()], timeout)
    m = re.search(r'<pre id="acbo-probe">(.*?)</pre>', result.stdout, re.S)
    if not m:
        raise RuntimeError(f"Chromium printed no probe (exit {result.returncode}): "
                           f"{result.stderr.strip()[-600:]}")
    return json.loads(html.unescape(m.group(1)))


def screenshot(page: Path, out: Path, width: int = 1280, height: int | None = None,
               browser: str | None = None, timeout: float = 120.0) -> Path:
    """A PNG of the page `width` px wide and `height` tall (default: the whole page)."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found; install it: {INSTALL}")
    if height is None:
        height = int(inspect(page, browser, timeout, width)["height"]) + 20
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = _run(browser, [f"--window-size={width},{height}", f"--screenshot={out}",
                            Path(page).resolve().as_uri()], timeout)
    if not out.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {result.returncode}): "
                           f"{result.stderr.strip()[-600:]}")
    return out


def screenshots(page: Path, out_dir: Path, browser: str | None = None) -> dict[str, Path]:
    """The whole page and its parts as PNGs in `out_dir`: ``verdict.png`` (title, verdict and
    the gates under it), ``stage_table.png`` (the first evaluation stage's heading, line and
    table), ``figure_<name>.png`` per figure, ``page.png``."""
    from PIL import Image

    browser = browser or find_browser()
    probe = inspect(page, browser)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = screenshot(page, out_dir / "page.png", height=int(probe["height"]) + 20, browser=browser)
    shots = {"page": full}
    image = Image.open(full)
    W, H = image.size

    def cut(name: str, top: int, bottom: int, left: int = 0, right: int | None = None):
        box = (max(left - 8, 0), max(top - 8, 0), min((right or W) + 8, W), min(bottom + 8, H))
        if box[3] > box[1] and box[2] > box[0]:
            path = out_dir / f"{name}.png"
            image.crop(box).save(path)
            shots[name] = path

    if probe.get("verdict_rect"):
        top = probe["verdict_rect"][1] - 60  # the title above it
        gates = [t for t in probe["tables"] if (t["title"] or "").startswith("Gates")]
        bottom = (gates[0]["rect"][1] + gates[0]["rect"][3] + 30) if gates else \
            probe["verdict_rect"][1] + probe["verdict_rect"][3]
        cut("verdict", top, bottom)
    stage_heads = [h for h in probe["headings"] if h[0] == "h3" and h[1].startswith("Stage ")]
    if stage_heads:
        top = stage_heads[0][2][1]
        after = [t for t in probe["tables"] if t["rect"][1] > top]
        if after:
            cut("stage_table", top, after[0]["rect"][1] + after[0]["rect"][3] + 60)
    for img in probe["images"]:
        x, y, w, h = img["rect"]
        cut(f"figure_{img['figure'] or img['alt']}", y, y + h, x, x + w)
    return shots


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m engine.report.browser REPORT.html OUT_DIR")
    for name, path in screenshots(Path(sys.argv[1]), Path(sys.argv[2])).items():
        print(f"{name}: {path}")
