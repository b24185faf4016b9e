"""The explorer in a real browser: Voila serves 00_explorer.ipynb on 127.0.0.1, Debian's Chromium
(driven by Playwright, never `playwright install`) opens the conv stage tab, moves a mismatch and
a polynomial control, and the displayed accuracy changes each time (and the plots re-render)."""

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
                       reason="Debian's chromium is not installed (CI installs it)"),
    pytest.mark.skipif(importlib.util.find_spec("voila") is None and not os.environ.get("CI"),
                       reason="voila is not installed (the notebooks extra; CI installs it)"),
]  # fmt: skip
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"voila exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:  # any HTTP answer means the server is up
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {seconds} s")


def _poll(fn, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _accuracy(text: str) -> str:
    """The accuracy figures of the label (``test accuracy 92.00 % ± 0.31 %``)."""
    match = re.search(r"test accuracy [0-9.]+ % ± [0-9.]+ %", text)
    return match.group(0) if match else ""


def _move(page, label, key: str, press: str, what: str) -> str:
    """Move control ``key`` by keyboard; wait for new accuracy figures and return the label."""
    before = _accuracy(label.inner_text())
    handle = page.locator(f".aanntwin-control-{key} .noUi-handle")
    handle.focus()
    handle.press(press)
    return _poll(lambda: (t := label.inner_text()) and _accuracy(t) not in ("", before) and t,
                 120, f"the accuracy to change after moving {what}")  # fmt: skip


def test_moving_a_mismatch_and_a_polynomial_control_changes_the_accuracy(tmp_path):
    import nbformat
    from playwright.sync_api import sync_playwright

    nb = nbformat.read(REPO / "notebooks" / "00_explorer.ipynb", as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source += (
        f"\nout_dir = {str(tmp_path / 'out')!r}\nquick = True"  # Voila takes no parameters
    )
    nbformat.write(nb, tmp_path / "00_explorer.ipynb")
    port = _free_port()
    env = {**os.environ, "AANNTWIN_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO),
           "OMP_WAIT_POLICY": "passive"}  # fmt: skip
    log = open(tmp_path / "voila.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", "00_explorer.ipynb", "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url + "api", proc, 60)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            page = browser.new_page()
            page.goto(url, timeout=180_000)  # Voila runs the notebook on page load
            label = page.locator(".aanntwin-accuracy")
            label.wait_for(timeout=180_000)
            first = _poll(lambda: _accuracy(label.inner_text()), 120, "the first evaluation")
            image = page.locator("img.aanntwin-plot")
            src = _poll(lambda: image.get_attribute("src"), 60, "the plot")
            page.locator(".lm-TabBar-tab", has_text="conv stage").click()
            mismatch = page.locator(".aanntwin-control-conv2d_gain_mismatch")
            mismatch.wait_for(state="visible", timeout=30_000)
            assert "off" in mismatch.inner_text()  # starts from the parameters: no mismatch
            after_mismatch = _move(page, label, "conv2d_gain_mismatch", "End", "the mismatch")
            assert "50 %" in mismatch.inner_text()
            poly = page.locator(".aanntwin-control-conv2d_input_nonlin_a2 .widget-readout")
            assert poly.inner_text().strip() == "0.1"  # the reference design's a2 (1/V)
            after_poly = _move(page, label, "conv2d_input_nonlin_a2", "End", "the polynomial")
            assert poly.inner_text().strip() == "1"
            src_after = _poll(lambda: (s := image.get_attribute("src")) != src and s, 60,
                              "the plot to re-render")  # fmt: skip
            assert page.locator("img.aanntwin-transfer").get_attribute("src")
            browser.close()
        accuracies = [first, _accuracy(after_mismatch), _accuracy(after_poly)]
        assert len(set(accuracies)) == 3, accuracies
        assert src_after != src
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
