"""Headless Chromium driven over the Chrome DevTools Protocol, for the tests of web pages.

`Browser` starts Chromium with a fresh profile and talks to its one page over a websocket
(the `websockets` package Prefect already installs; no browser download, no extra
dependency). `Browser.press` types real keyboard events (``Input.dispatchKeyEvent``: the
page's listeners see them as a user's keys). `find_chromium` looks for a Chromium binary
(``TV100_CHROMIUM`` chooses one); the tests skip without it.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.prefect_server import kill_group as _kill_group
from tests.support.prefect_server import tail as _tail

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]

#: Keys without a character: DOM ``key`` -> (``code``, Windows virtual key code).
NAMED_KEYS: dict[str, tuple[str, int]] = {
    "ArrowLeft": ("ArrowLeft", 37),
    "ArrowUp": ("ArrowUp", 38),
    "ArrowRight": ("ArrowRight", 39),
    "ArrowDown": ("ArrowDown", 40),
    "Escape": ("Escape", 27),
    "Enter": ("Enter", 13),
    "Tab": ("Tab", 9),
    "Backspace": ("Backspace", 8),
}
#: Characters typed with shift on a US keyboard, and the key they are on:
#: character -> (``code``, Windows virtual key code).
SHIFTED: dict[str, tuple[str, int]] = {
    "?": ("Slash", 191),
    "!": ("Digit1", 49),
    ":": ("Semicolon", 186),
}
SHIFT = 8  # the ``modifiers`` bit of Input.dispatchKeyEvent


def find_chromium() -> str | None:
    explicit = os.environ.get("TV100_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _key_event(key: str) -> tuple[dict[str, Any], bool]:
    """The fields of a key's events, and whether it is typed with shift."""
    if key in NAMED_KEYS:
        code, vk = NAMED_KEYS[key]
        return {"key": key, "code": code, "windowsVirtualKeyCode": vk}, False
    if len(key) != 1:
        raise ValueError(f"key {key!r}: expected one character or one of {sorted(NAMED_KEYS)}")
    if key in SHIFTED:
        code, vk = SHIFTED[key]
        shift = True
    elif key == " ":
        code, vk, shift = "Space", 32, False
    elif key.isalpha():
        code, vk, shift = f"Key{key.upper()}", ord(key.upper()), key.isupper()
    elif key.isdigit():
        code, vk, shift = f"Digit{key}", ord(key), False
    else:
        raise ValueError(f"key {key!r} is not one `Browser.press` knows how to type")
    return {"key": key, "code": code, "windowsVirtualKeyCode": vk, "text": key,
            "unmodifiedText": key.lower()}, shift


class Browser:
    """Headless Chromium driven over the Chrome DevTools Protocol (one page, one socket)."""

    def __init__(self, executable: str, workdir: Path, width: int = 1440, height: int = 1000):
        from websockets.sync.client import connect

        profile = workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=False)  # a fresh --user-data-dir every time
        self.log = workdir / "chromium.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                 f"--window-size={width},{height}", "about:blank"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            port_file = profile / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not (port_file.is_file() and port_file.read_text().strip()):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Chromium did not start:\n{_tail(self.log)}")
                time.sleep(0.1)
            port = port_file.read_text().split()[0]
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(t for t in targets if t["type"] == "page")
            self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        except BaseException:
            _kill_group(self.proc, grace_s=5)
            raise
        self.ids = itertools.count(1)
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:  # skip events until our answer
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def press(self, key: str) -> None:
        """Type one key as a user does: a key-down (with its character, if any) and a key-up
        to the focused page. Upper-case letters and ``?`` are typed with shift."""
        fields, shift = _key_event(key)
        modifiers = SHIFT if shift else 0
        down = "keyDown" if "text" in fields else "rawKeyDown"
        self.send("Input.dispatchKeyEvent", type=down, modifiers=modifiers, **fields)
        up = {k: v for k, v in fields.items() if k not in ("text", "unmodifiedText")}
        self.send("Input.dispatchKeyEvent", type="keyUp", modifiers=modifiers, **up)

    def wait_for(self, expression: str, check: Callable[[Any], bool], what: str,
                 timeout: float = 60.0) -> Any:
        """Poll `expression` until `check(value)`; fail with the page's text if it never is."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value is not None and check(value):
                return value
            time.sleep(0.25)
        text = self.eval("document.body ? document.body.innerText : ''") or ""
        raise AssertionError(f"UI never showed {what} (last: {value!r}); page text:\n{text[:3000]}")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            _kill_group(self.proc, grace_s=5)
