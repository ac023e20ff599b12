"""Headless Chromium helpers: render a report, read its DOM after scripts ran, take a screenshot.

Used by the browser tests and by ``reasonlens report --screenshot``. Chromium runs with no network services,
no sandbox (containers run as root), a fresh profile directory, and a virtual-time budget so the page's
scripts finish before the DOM is dumped or the screenshot taken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from reasonlens.errors import UserError

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BASE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)
CONSOLE_ERROR_MARKERS = ("Uncaught", "Unhandled rejection", "SyntaxError", "ReferenceError", "TypeError")


class BrowserUnavailable(RuntimeError):
    """No usable Chromium (the message says why)."""


@dataclass
class Rendered:
    """What a headless run produced: the DOM after scripts (or ''), Chromium's stderr, and the exit code."""

    dom: str
    stderr: str
    returncode: int

    def console_errors(self) -> list[str]:
        """Lines of Chromium's log that report script errors (uncaught exceptions, console errors)."""
        return [
            line
            for line in self.stderr.splitlines()
            if "CONSOLE" in line and any(marker in line for marker in CONSOLE_ERROR_MARKERS)
        ]


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH (or $REASONLENS_CHROMIUM), else None."""
    explicit = os.environ.get("REASONLENS_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium(install: bool = True, timeout: float = 900) -> str:
    """A Chromium binary, installing Debian's ``chromium`` with apt-get when allowed (root, apt present).

    Raises :class:`BrowserUnavailable` with the reason when there is none and it cannot be installed.
    """
    path = find_chromium()
    if path:
        return path
    if not install:
        raise BrowserUnavailable("chromium is not installed")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise BrowserUnavailable("chromium is not installed and installing it needs root (apt-get install chromium)")
    if shutil.which("apt-get") is None:
        raise BrowserUnavailable("chromium is not installed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "install", "-y", "-q", "chromium"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "chromium"],
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrowserUnavailable(f"`{' '.join(command)}` failed: {exc}") from None
        if command[1] == "install" and done.returncode == 0 and find_chromium():
            return find_chromium()  # type: ignore[return-value]
        if command[1] == "update" and done.returncode != 0:
            raise BrowserUnavailable(f"apt-get update failed: {done.stderr.strip().splitlines()[-1:]}")
    raise BrowserUnavailable(
        f"apt-get install chromium did not succeed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    )


def _run(binary: str, page: Path, extra: list[str], timeout: float, view: str = "") -> subprocess.CompletedProcess:
    url = Path(page).resolve().as_uri() + (f"#{view.lstrip('#')}" if view else "")
    with tempfile.TemporaryDirectory(prefix="reasonlens-chromium-") as profile:
        command = [binary, *BASE_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, url]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            raise BrowserUnavailable(f"chromium did not finish within {timeout:.0f} s") from None


def render_dom(
    page: str | Path,
    binary: str | None = None,
    budget_ms: int = 5000,
    window: tuple[int, int] = (1366, 900),
    timeout: float = 120,
    view: str = "",
) -> Rendered:
    """The page's DOM after its scripts ran (``--dump-dom`` with a virtual-time budget).

    ``view`` is the URL fragment the report reads, e.g. ``run=1&trace=7&layer=final``.
    """
    binary = binary or ensure_chromium(install=False)
    done = _run(
        binary,
        Path(page),
        [f"--virtual-time-budget={budget_ms}", f"--window-size={window[0]},{window[1]}", "--dump-dom"],
        timeout,
        view,
    )
    return Rendered(done.stdout, done.stderr, done.returncode)


def screenshot(
    page: str | Path,
    out: str | Path,
    binary: str | None = None,
    window: tuple[int, int] = (1440, 1800),
    budget_ms: int = 5000,
    timeout: float = 120,
    view: str = "",
) -> Rendered:
    """Save a PNG of the rendered page (the top ``window`` pixels, showing ``view``) to ``out``."""
    try:
        binary = binary or ensure_chromium(install=False)
    except BrowserUnavailable as exc:
        raise UserError(f"--screenshot: {exc} (install Debian's chromium, or set REASONLENS_CHROMIUM)") from None
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _run(
        binary,
        Path(page),
        [f"--virtual-time-budget={budget_ms}", f"--window-size={window[0]},{window[1]}", f"--screenshot={out}"],
        timeout,
        view,
    )
    if not out.is_file():
        raise UserError(
            f"--screenshot {out}: chromium wrote no file (exit {done.returncode}: "
            f"{done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else ''})"
        )
    return Rendered("", done.stderr, done.returncode)
