"""Headless Chromium for tests that look at pages as a person does; the network is cut
(a dead proxy) except for 127.0.0.1, which Chromium never sends through a proxy."""

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser",
                                                  "google-chrome") if shutil.which(name)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not found (apt-get install chromium); "
                             ".ci/run installs it")


def _chromium(url: str, *extra: str, budget_ms: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--proxy-server=http://127.0.0.1:9", "--window-size=1400,2600",
         f"--virtual-time-budget={budget_ms}", *extra, url],
        capture_output=True, text=True, timeout=180)


def rendered_dom(url: str, budget_ms: int = 20000) -> str:
    """The page's DOM after its scripts ran (and its requests settled)."""
    return _chromium(url, "--dump-dom", budget_ms=budget_ms).stdout


def screenshot(url: str, path: Path, budget_ms: int = 20000) -> Path:
    _chromium(url, f"--screenshot={path}", budget_ms=budget_ms)
    return path
