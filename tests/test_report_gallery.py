"""The HTML gallery: escaped text, relative links that resolve, edits shown as input | edited with their
captions, warnings, and a real headless Chromium check.

The browser test drives Debian's ``chromium`` over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: JSON messages ending in NUL on fds 3 and 4, wired up by bash), so it needs no
Python package beyond the standard library. It is skipped when ``/usr/bin/chromium`` is absent
(``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import re
import select
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evalrun.report import build_report
from report_synthetic import PROMPTS, make_failed, make_sweep

CHROMIUM = Path("/usr/bin/chromium")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.hrefs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs["src"])
        elif tag == "a":
            self.hrefs.append(attrs["href"])
        elif tag == "script":
            self.scripts += 1


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    sweep_dir = make_sweep(tmp_path / "sweep", models=("sd14", "sd15"), schedulers=("ddim",), steps=(2, 3),
                           seeds=(0, 1))
    return build_report([sweep_dir], plots=False)["gallery"][0]


def test_gallery_escapes_prompt_text(gallery: Path) -> None:
    html = gallery.read_text()
    assert "<script>window.__xss" not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt; fish &amp; chips &quot;quoted&quot;" in html
    assert "Food &amp; Beverage" in html and "a cat | a dog, 100% fluffy" in html
    parser = _Links()
    parser.feed(html)
    assert parser.scripts == 1  # the page's own filter script only


def test_gallery_links_are_relative_and_resolve(gallery: Path) -> None:
    parser = _Links()
    parser.feed(gallery.read_text())
    assert len(parser.imgs) == len(PROMPTS) * 2 * 2 * 2  # prompts x (models x steps) x seeds
    for link in parser.imgs + parser.hrefs:
        assert not link.startswith(("/", "file:", "http")), link
        assert (gallery.parent / unquote(link)).exists(), link
    run_links = [h for h in parser.hrefs if "seed=" in unquote(h)]
    assert len(run_links) == 8 and all((gallery.parent / unquote(h) / "run.json").exists() for h in run_links)


@pytest.fixture
def edit_gallery(tmp_path: Path) -> Path:
    sweep_dir = make_sweep(tmp_path / "edit", models=("sd15",), schedulers=("ddim", "dpm"), steps=(2,), seeds=(0, 1),
                           edit_inputs=tmp_path / "photos")
    return build_report([sweep_dir], plots=False)["gallery"][0]


def test_edit_gallery_shows_input_then_edits_with_all_three_texts(edit_gallery: Path, tmp_path: Path) -> None:
    html = edit_gallery.read_text()
    sections = re.findall(r'<section class="prompt".*?</section>', html, flags=re.S)
    assert len(sections) == len(PROMPTS)
    for p_index, section in enumerate(sections):
        assert "<th>seed</th><th>input</th><th>Scheduler: <b>ddim</b></th><th>Scheduler: <b>dpm</b></th>" in section
        parser = _Links()
        parser.feed(section)
        assert len(parser.imgs) == 1 + 2 * 2  # the input once (rowspan over the seeds), then configs x seeds
        assert parser.imgs[0].startswith("inputs/") and 'rowspan="2"' in section
        assert f"<b>Output caption:</b> after &lt;{p_index}&gt; &amp; done" in section
        assert "<b>Instruction:</b>" in section and "<b>Input caption:</b> before: " in section
    assert "<b>Instruction:</b> &lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    # the inputs are copied beside the page: the gallery survives the originals moving away
    for photo in (tmp_path / "photos").iterdir():
        photo.unlink()
    parser = _Links()
    parser.feed(html)
    assert all((edit_gallery.parent / unquote(link)).exists() for link in parser.imgs)
    copied = sorted((edit_gallery.parent / "inputs").iterdir())
    assert len(copied) == len(PROMPTS) and Image.open(copied[0]).size == (8, 12)


def test_edits_of_other_input_images_are_never_shown_beside_one_input(tmp_path: Path) -> None:
    """Two edit tables with the same instructions on other input files: each input gets its own section with
    the edits made from it (a section showed the first table's input beside the second table's edits, and
    the highlighting compared edits of different images)."""
    sweep_dir = tmp_path / "sweep"
    make_sweep(sweep_dir, schedulers=("ddim",), steps=(2,), seeds=(0,), edit_inputs=tmp_path / "a", edit_pixels="a")
    make_sweep(sweep_dir, schedulers=("dpm",), steps=(2,), seeds=(0,), edit_inputs=tmp_path / "b", edit_pixels="b")
    html = build_report([sweep_dir], plots=False)["gallery"][0].read_text()
    sections = re.findall(r'<section class="prompt".*?</section>', html, flags=re.S)
    assert len(sections) == 2 * len(PROMPTS)
    for section in sections:
        parser = _Links()
        parser.feed(section)
        assert len(parser.imgs) == 2  # its input, then the one edit made from it
    # The same inputs in two folders (one table run from two checkouts): the same edits, grouped and paired.
    same = tmp_path / "same"
    make_sweep(same, schedulers=("ddim",), steps=(2,), seeds=(0, 1), edit_inputs=tmp_path / "c", edit_pixels="c")
    make_sweep(same, schedulers=("dpm",), steps=(2,), seeds=(0, 1), edit_inputs=tmp_path / "d", edit_pixels="c")
    html = build_report([same], plots=False)["gallery"][0].read_text()
    assert len(re.findall(r'<section class="prompt"', html)) == len(PROMPTS)
    from evalrun.report import load_sweep
    from evalrun.report.compare import compare

    result = compare(load_sweep([same]), "scheduler=ddim", "scheduler=dpm").results.set_index("metric")
    assert result.loc["clip_score", "pairs"] == 2 * len(PROMPTS)  # prompts x seeds


def test_edit_input_that_is_not_a_file_is_named_not_linked(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "edit", schedulers=("ddim",), steps=(2,), seeds=(0,), edit_inputs=tmp_path / "p")
    for per_image in sweep_dir.rglob("per_image.csv"):
        frame = pd.read_csv(per_image)
        frame["input_path"] = [f"user/edits[train][{i}]" for i in range(len(frame))]
        frame.to_csv(per_image, index=False)
    html = build_report([sweep_dir], plots=False)["gallery"][0].read_text()
    assert "input not shown: user/edits[train][0] is not a readable file" in html
    assert "inputs/" not in html


def _above_4(fd: int) -> int:
    """The same pipe end on a descriptor the shell's ``3<&N 4>&M`` cannot clobber."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class DevTools:
    """Just enough of the Chrome DevTools protocol over ``--remote-debugging-pipe``."""

    def __init__(self, exe: Path, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = _above_4(to_chrome_r), _above_4(from_chrome_w)
        # Chromium reads commands on fd 3 and writes replies on fd 4.
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', str(exe), "--headless",
             "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--allow-file-access-from-files", f"--user-data-dir={profile}", "--window-size=1280,1600",
             "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, timeout: float = 60, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._read(deadline))

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


# Make lazy images load, wait for each to finish, then list those that did not decode.
CHECK_IMAGES = """(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = 'eager'; });
  const settle = i => i.complete ? null : new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); });
  await Promise.race([Promise.all(imgs.map(settle)), new Promise(r => setTimeout(r, 20000))]);
  return {total: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
          xss: typeof window.__xss !== 'undefined', text: document.body.innerText};
})()"""


def open_page(page: Path, profile: Path, screenshot: Path | None = None) -> dict:
    browser = DevTools(CHROMIUM, profile)
    try:
        target = browser.call("Target.createTarget", url="about:blank")["targetId"]
        session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        browser.call("Page.enable", session)
        browser.call("Page.navigate", session, url=page.resolve().as_uri())
        browser.wait_event("Page.loadEventFired")
        result = browser.call("Runtime.evaluate", session, expression=CHECK_IMAGES, awaitPromise=True,
                              returnByValue=True)["result"]["value"]
        if screenshot is not None:
            shot = browser.call("Page.captureScreenshot", session, format="png")["data"]
            screenshot.write_bytes(base64.b64decode(shot))
        return result
    finally:
        browser.close()


needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install -y chromium)")


@needs_chromium
def test_gallery_in_headless_chromium(gallery: Path, tmp_path: Path) -> None:
    shot = tmp_path / "gallery.png"
    result = open_page(gallery, tmp_path / "profile", screenshot=shot)
    assert result["total"] == len(PROMPTS) * 8
    assert result["broken"] == []
    assert not result["xss"]
    assert "<script>window.__xss=1</script> fish & chips" in result["text"]  # shown as text, not run
    image = Image.open(io.BytesIO(shot.read_bytes()))
    assert image.format == "PNG" and image.size[0] >= 800
    assert np.unique(np.asarray(image.convert("L"))).size > 10  # not a blank page


@needs_chromium
def test_edit_gallery_and_warnings_in_headless_chromium(tmp_path: Path) -> None:
    sweep_dir = make_sweep(tmp_path / "edit", schedulers=("ddim", "dpm"), steps=(2,), seeds=(0, 1),
                           edit_inputs=tmp_path / "photos", smoke=True)
    make_failed(sweep_dir / "scheduler=euler", "RuntimeError: boom")
    page = build_report([sweep_dir], plots=False)["gallery"][0]
    result = open_page(page, tmp_path / "profile")
    assert result["total"] == len(PROMPTS) * (1 + 4) and result["broken"] == []
    text = result["text"]
    assert "SMOKE MODEL WITH RANDOM WEIGHTS" in text and "RuntimeError: boom" in text
    assert "Instruction:" in text and "Input caption:" in text and "Output caption: after <1> & done" in text


@needs_chromium
def test_browser_check_detects_a_broken_image(gallery: Path, tmp_path: Path) -> None:
    html = gallery.read_text()
    first = re.search(r'<img src="([^"]+)"', html).group(1)
    (gallery.parent / unquote(first)).unlink()
    result = open_page(gallery, tmp_path / "profile")
    assert result["broken"] == [first]
