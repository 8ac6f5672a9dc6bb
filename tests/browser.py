"""Real headless Chromium for integration tests: load a page, wait for the text a person sees.

Chromium is driven over the DevTools protocol (CDP) with the ``websockets`` sync client, so a
single-page app that fetches its data after load (the Prefect UI) is polled until the expected
text is rendered, instead of being dumped once at an arbitrary moment (``--dump-dom``).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--no-proxy-server",
         "--remote-debugging-port=0"]  # fmt: skip
# innerText is the rendered text: display:none, <script> and <style> are left out, but the labels
# of all <option>s of a <select> are in (the Prefect UI's state filters list "Completed" etc.)
VISIBLE_TEXT = "document.body ? document.body.innerText : ''"
# offline: every host name but loopback fails to resolve, as on a machine without internet
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def chromium_path() -> str | None:
    """The Chromium executable (Debian's ``chromium`` or ``chromium-browser``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Cdp:
    """A minimal synchronous CDP client on one page target's websocket (``.ws``)."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        from websockets.sync.client import connect  # lazy: only the browser tests need it

        self.ws = connect(ws_url, proxy=None, max_size=None, open_timeout=timeout)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []  # the events received (of the enabled domains)

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send one command and return its result, skipping the events received meanwhile."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method} failed: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)


def _page_ws_url(profile: Path, proc: subprocess.Popen[bytes], deadline: float) -> str:
    """Wait for Chromium's DevToolsActivePort file, then return the first page target's ws URL."""
    port_file = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (profile / "chromium.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"chromium exited with {proc.returncode}:\n{log}")
        lines = port_file.read_text().split() if port_file.exists() else []
        if len(lines) >= 2:  # written in two steps: wait for both the port and the path
            with NO_PROXY.open(f"http://127.0.0.1:{lines[0]}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port in time")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM Chromium's process group, then SIGKILL whatever of the group is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return  # the whole group is gone
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


@contextlib.contextmanager
def chromium(
    window: str = "1400,1000", timeout: float = 30.0, offline: bool = False
) -> Iterator[Cdp]:
    """Headless Chromium on a fresh temporary profile, as a CDP client on its blank page.
    On exit Chromium's whole process group is killed and the profile removed, also on failure."""
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    profile = Path(tempfile.mkdtemp(prefix="edgeops-chromium-"))
    cmd = [
        exe,
        *FLAGS,
        *(OFFLINE if offline else []),
        f"--user-data-dir={profile}",
        f"--window-size={window}",
        "about:blank",
    ]
    # HOME and XDG dirs too: else crashpad and dconf write under ~/.config and ~/.cache
    env = dict(os.environ, HOME=str(profile), XDG_CONFIG_HOME=str(profile / "config"),
               XDG_CACHE_HOME=str(profile / "cache"))  # fmt: skip
    proc: subprocess.Popen[bytes] | None = None
    cdp: Cdp | None = None
    try:
        with open(profile / "chromium.log", "wb") as log:  # the child keeps its own descriptor
            # a session of its own: zygotes, renderers and GPU process are signalled as one group
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        cdp = Cdp(_page_ws_url(profile, proc, time.monotonic() + timeout), timeout)
        width, height = (int(n) for n in window.split(","))  # the viewport, exactly
        cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                 deviceScaleFactor=1, mobile=False)  # fmt: skip
        yield cdp
    finally:
        if cdp is not None:
            cdp.ws.close()
        if proc is not None:
            _kill(proc)
        shutil.rmtree(profile, ignore_errors=True)


def render(url: str, screenshot: Path, expect: list[str], timeout: float = 60.0,
           window: str = "1400,1000", offline: bool = False,
           requests: list[dict[str, Any]] | None = None) -> str:  # fmt: skip
    """Load url in headless Chromium until every string in `expect` is in the page's visible text
    (retrying/polling until timeout), save a PNG screenshot, return the visible text.
    Raises AssertionError naming the missing strings and the text seen, on timeout.

    Runs of whitespace count as one space ("run-1 Completed" matches a name above its badge).
    Only `expect` is waited for: the rest of the page may still be loading (skeletons, a count
    of "0 Flow runs"), so expect the data itself, not the navigation's "Dashboard" or "Runs".
    The screenshot is saved on timeout too. ``requests``: a list that gets every request the
    page made, ``{"url", "failed", "blocked"}`` (``blocked``: the reason Chromium did not send
    it, e.g. "csp"), appended when the page is done.
    """
    deadline = time.monotonic() + timeout
    wanted = {s: " ".join(s.split()) for s in expect}
    with chromium(window, timeout, offline) as cdp:
        if requests is not None:
            cdp.call("Network.enable")
        try:
            text = _render(cdp, url, screenshot, expect, wanted, deadline, timeout)
        finally:
            if requests is not None:
                requests.extend(_requests(cdp.events))
        return text


def _requests(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests of a page from its Network events: url, and why it failed if it did."""
    sent = {e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in events if e["method"] == "Network.requestWillBeSent"}  # fmt: skip
    out = {rid: {"url": u, "failed": None, "blocked": None} for rid, u in sent.items()}
    for e in events:
        if e["method"] == "Network.loadingFailed" and e["params"]["requestId"] in out:
            p = e["params"]
            out[p["requestId"]].update(failed=p.get("errorText"), blocked=p.get("blockedReason"))
    return list(out.values())


def _render(cdp: Cdp, url: str, screenshot: Path, expect: list[str], wanted: dict[str, str],
            deadline: float, timeout: float) -> str:  # fmt: skip
    """Navigate, poll the visible text until ``wanted`` is in it, take the screenshot."""
    nav = cdp.call("Page.navigate", url=url)
    if nav.get("errorText"):  # e.g. net::ERR_CONNECTION_REFUSED: the server is not up
        raise AssertionError(f"{url}: {nav['errorText']}")
    text, missing = "", list(expect)
    while True:
        try:
            result = cdp.call("Runtime.evaluate", expression=VISIBLE_TEXT, returnByValue=True)
            text = str(result.get("result", {}).get("value") or "")
            missing = [s for s, w in wanted.items() if w not in " ".join(text.split())]
        except RuntimeError:  # the page navigated (a redirect) while evaluating: poll again
            pass
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    # let the frame showing the text be painted before taking the picture
    settle = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
    cdp.call("Runtime.evaluate", expression=settle, awaitPromise=True, timeout=5)
    shot = cdp.call("Page.captureScreenshot", format="png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    if missing:
        raise AssertionError(f"{url}: after {timeout:.0f}s still missing {missing}; "
                             f"visible text:\n{text}")  # fmt: skip
    return text
