"""Real headless Chromium for integration tests: load a page, wait for the text a person sees.

Chromium is driven over the DevTools protocol (CDP) with the ``websockets`` sync client, so a
single-page app that fetches its data after load (the Prefect UI) is polled until the expected
text is rendered, instead of being dumped once at an arbitrary moment (``--dump-dom``).

Every page is rendered offline, as on a machine without internet: every host name but loopback
fails to resolve, the page's requests are recorded, and :func:`render` fails on any request to a
host that is not loopback, whether or not it succeeded (see :func:`outside_requests`). Recorded
are the requests of the page's target (its documents, subresources, fetches, WebSockets, same-
process frames); a worker's or an out-of-process frame's own requests are not (they still fail
to resolve).
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
from typing import Any, Literal
from urllib.parse import urlsplit

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--no-proxy-server",
    "--remote-debugging-port=0",
]
# innerText is the rendered text: display:none, <script> and <style> are left out, but the labels
# of all <option>s of a <select> are in (the Prefect UI's state filters list "Completed" etc.)
VISIBLE_TEXT = "document.body ? document.body.innerText : ''"
# offline: every host name but loopback fails to resolve, as on a machine without internet
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
LOCAL_SCHEMES = frozenset({"file", "data", "blob", "about"})  # nothing goes over a network


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

    def drain(self, quiet: float = 0.25, limit: float = 2.0) -> None:
        """Record the events that arrive until none came for ``quiet`` seconds, or for ``limit``
        seconds at most (a polling page never goes quiet): the last requests of a page, reported
        after the last command's answer."""
        end = time.monotonic() + limit
        with contextlib.suppress(TimeoutError):
            while time.monotonic() < end:
                msg = json.loads(
                    self.ws.recv(timeout=max(0.01, min(quiet, end - time.monotonic())))
                )
                if "method" in msg:
                    self.events.append(msg)

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
    window: str = "1400,1000", timeout: float = 30.0, offline: bool = True
) -> Iterator[Cdp]:
    """Headless Chromium on a fresh temporary profile, as a CDP client on its blank page.
    ``offline``: every host name but loopback fails to resolve (:data:`OFFLINE`).
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
    env = dict(
        os.environ,
        HOME=str(profile),
        XDG_CONFIG_HOME=str(profile / "config"),
        XDG_CACHE_HOME=str(profile / "cache"),
    )
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
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        yield cdp
    finally:
        if cdp is not None:
            cdp.ws.close()
        if proc is not None:
            _kill(proc)
        shutil.rmtree(profile, ignore_errors=True)


def render(
    url: str,
    screenshot: Path,
    expect: list[str],
    timeout: float = 60.0,
    window: str = "1400,1000",
    offline: Literal[True] = True,
    requests: list[dict[str, Any]] | None = None,
    ready: str | None = None,
    allow_blocked: frozenset[str] = frozenset(),
) -> str:
    """Load url in headless Chromium, offline, until every string in `expect` is in the page's
    visible text (retrying/polling until timeout), save a PNG screenshot, return the visible text.
    Raises AssertionError naming the missing strings and the text seen, on timeout, and naming
    every request the page made to a host that is not loopback (:func:`outside_requests`).

    Runs of whitespace count as one space ("run-1 Completed" matches a name above its badge).
    Only `expect` is waited for: the rest of the page may still be loading (skeletons, a count
    of "0 Flow runs"), so expect the data itself, not the navigation's "Dashboard" or "Runs".
    ``ready``: a JavaScript expression that must be true as well (e.g. plots drawn on canvas,
    which have no text). The screenshot is saved on timeout too. ``requests``: a list that gets
    every request the page made, ``{"url", "failed", "blocked"}`` (``blocked``: the reason
    Chromium did not send it, e.g. "csp"), appended when the page is done. ``allow_blocked``:
    such reasons under which an outside request Chromium never sent is tolerated (``{"csp"}``).
    ``offline`` is always true (the parameter stays for callers that spell it out).
    """
    if offline is not True:
        raise ValueError("render() always runs offline: every page must work without internet")
    deadline = time.monotonic() + timeout
    wanted = {s: " ".join(s.split()) for s in expect}
    problem: AssertionError | None = None
    with chromium(window, timeout, offline=True) as cdp:
        cdp.call("Network.enable")
        seen: list[dict[str, Any]] = []
        try:
            text = _render(cdp, url, screenshot, wanted, ready, deadline, timeout)
        except AssertionError as exc:  # reported below, with the outside requests if any
            problem, text = exc, ""
        finally:
            with contextlib.suppress(Exception):
                cdp.drain()
            seen = _requests(cdp.events)
            if requests is not None:
                requests.extend(seen)
    outside = outside_requests(seen, allow_blocked)
    if outside:
        lines = [f"  {r['url']} ({r['blocked'] or r['failed'] or 'sent'})" for r in outside]
        message = f"{url}: {len(outside)} request(s) to a non-loopback host:\n" + "\n".join(lines)
        raise AssertionError(message + (f"\n{problem}" if problem else ""))
    if problem is not None:
        raise problem
    return text


def outside_requests(
    requests: list[dict[str, Any]], allow_blocked: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """The requests to a host that is not loopback (127.0.0.1, localhost, ::1); file:, data:,
    blob: and about: URLs are local. Failed ones count too: offline they cannot succeed, but the
    page depended on them. Requests Chromium never sent for a reason in ``allow_blocked`` are left
    out."""
    out = []
    for r in requests:
        parts = urlsplit(r["url"])
        if parts.scheme in LOCAL_SCHEMES or parts.hostname in LOOPBACK:
            continue
        if r.get("blocked") and r["blocked"] in allow_blocked:
            continue
        out.append(r)
    return out


def _requests(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests of a page from its Network events: url, and why it failed if it did.

    A redirect is a request of its own (every URL the page's request went to); a WebSocket is a
    request too (``Network.webSocketCreated``)."""
    out: list[dict[str, Any]] = []
    last: dict[str, dict[str, Any]] = {}  # requestId -> its latest entry (after redirects)
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Network.requestWillBeSent":
            last[p["requestId"]] = {"url": p["request"]["url"], "failed": None, "blocked": None}
            out.append(last[p["requestId"]])
        elif e["method"] == "Network.webSocketCreated":
            out.append({"url": p["url"], "failed": None, "blocked": None})
        elif e["method"] == "Network.loadingFailed" and p["requestId"] in last:
            last[p["requestId"]].update(failed=p.get("errorText"), blocked=p.get("blockedReason"))
    return out


def _poll(cdp: Cdp, wanted: dict[str, str], ready: str | None) -> tuple[str, list[str]]:
    """The visible text and what is still missing of ``wanted`` (and of ``ready``)."""
    result = cdp.call("Runtime.evaluate", expression=VISIBLE_TEXT, returnByValue=True)
    text = str(result.get("result", {}).get("value") or "")
    missing = [s for s, w in wanted.items() if w not in " ".join(text.split())]
    if ready is not None:
        done = cdp.call("Runtime.evaluate", expression=f"!!({ready})", returnByValue=True)
        if done.get("result", {}).get("value") is not True:
            missing.append(f"ready: {ready}")
    return text, missing


def _render(
    cdp: Cdp,
    url: str,
    screenshot: Path,
    wanted: dict[str, str],
    ready: str | None,
    deadline: float,
    timeout: float,
) -> str:
    """Navigate, poll the visible text until ``wanted`` is in it, take the screenshot."""
    nav = cdp.call("Page.navigate", url=url)
    if nav.get("errorText"):  # e.g. net::ERR_CONNECTION_REFUSED: the server is not up
        raise AssertionError(f"{url}: {nav['errorText']}")
    text, missing = "", [*wanted, *([f"ready: {ready}"] if ready else [])]
    while True:
        # RuntimeError: the page navigated (a redirect) while evaluating: poll again
        with contextlib.suppress(RuntimeError):
            text, missing = _poll(cdp, wanted, ready)
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
        raise AssertionError(
            f"{url}: after {timeout:.0f}s still missing {missing}; visible text:\n{text}"
        )
    return text
