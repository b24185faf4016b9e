"""The explorer in a real browser: Voila serves 00_explorer.ipynb on 127.0.0.1, Debian's Chromium
(driven by Playwright, never `playwright install`) moves the input-noise slider, and the displayed
accuracy and the plot change."""

import os
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
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (CI installs it)",
)
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


def test_moving_a_noise_slider_updates_accuracy_and_plot(tmp_path):
    import nbformat
    from playwright.sync_api import sync_playwright

    nb = nbformat.read(REPO / "notebooks" / "00_explorer.ipynb", as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params.source += f"\nout_dir = {str(tmp_path / 'out')!r}"  # Voila takes no parameters
    nbformat.write(nb, tmp_path / "00_explorer.ipynb")
    port = _free_port()
    env = {**os.environ, "AANNTWIN_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
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
            before = _poll(lambda: "%" in label.inner_text() and label.inner_text(), 120,
                           "the first evaluation")  # fmt: skip
            image = page.locator("img.aanntwin-plot")
            src_before = _poll(lambda: image.get_attribute("src"), 60, "the plot")
            handle = page.locator(".widget-slider .noUi-handle").first
            handle.focus()
            for _ in range(8):  # input noise 0 -> 0.4 V
                handle.press("ArrowRight")
            after = _poll(lambda: (t := label.inner_text()) != before and "%" in t and t, 120,
                          "the accuracy to change")  # fmt: skip
            src_after = _poll(lambda: (s := image.get_attribute("src")) != src_before and s, 60,
                              "the plot to re-render")  # fmt: skip
            browser.close()
        assert before != after and src_before != src_after
        assert "accuracy" in after
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
