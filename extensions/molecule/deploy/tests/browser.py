"""A real browser for the front door's tests: headless Chromium, driven over the DevTools protocol.

It trusts the lab's test CA (an NSS database of its own), resolves every name under lab.test to loopback, and
records, per page load, every response's status and every request that failed, and takes screenshots. A page
rendered earlier can be loaded again as it was (``html=``): the browser gets that HTML for the page's URL, and
fetches everything it references from the network, as a browser holding an old page would.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from websockets.sync.client import connect

CHROMIUM = shutil.which("chromium") or "chromium"
LAUNCH_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 30.0


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, ca, width=1024, height=768):
        self.home = Path(tempfile.mkdtemp(prefix="asgi-browser-"))
        nss = self.home / ".pki/nssdb"
        nss.mkdir(parents=True)
        subprocess.run(["certutil", "-N", "--empty-password", "-d", f"sql:{nss}"], check=True, capture_output=True)
        subprocess.run(["certutil", "-A", "-n", "asgi-lab", "-t", "C,,", "-i", str(ca), "-d", f"sql:{nss}"],
                       check=True, capture_output=True)  # fmt: skip
        profile = self.home / "profile"
        argv = [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}",
            "--host-resolver-rules=MAP *.lab.test 127.0.0.1", "--hide-scrollbars", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, env={**os.environ, "HOME": str(self.home)}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + LAUNCH_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BrowserError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        page = next(p for p in pages if p.get("type") == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=10)
        self.ids = itertools.count(1)
        self.events = []
        self.call("Page.enable")
        # Lifecycle events say when the page's network went idle: a CSS file's images may be asked for after the
        # load event.
        self.call("Page.setLifecycleEventsEnabled", enabled=True)
        self.call("Network.enable")
        # Every load asks the network: what a handover's front door serves, not the browser's cache.
        self.call("Network.setCacheDisabled", cacheDisabled=True)

    def call(self, method, **params):
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=LOAD_TIMEOUT_S))
            if message.get("id") == number:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
            self._answer(message)

    def _answer(self, message):
        if message.get("method") == "Fetch.requestPaused" and self._html is not None:
            body = base64.b64encode(self._html.encode()).decode()
            headers = [{"name": "Content-Type", "value": "text/html; charset=utf-8"}]
            self.ws.send(json.dumps({"id": next(self.ids), "method": "Fetch.fulfillRequest", "params": {
                "requestId": message["params"]["requestId"], "responseCode": 200, "responseHeaders": headers,
                "body": body}}))  # fmt: skip

    _html = None

    def load(self, url, html=None, attempts=3):
        """``load_once``, again when the machine's network changed under the browser (ERR_NETWORK_CHANGED: another
        job adding or removing a container's interface on a shared CI machine aborts the requests in flight): a
        client-side abort, not a server's answer. Any other failure is the result."""
        for _ in range(attempts):
            found = self.load_once(url, html)
            if not any(error == "net::ERR_NETWORK_CHANGED" for _kind, error in found["failed"]):
                return found
        return found

    def load_once(self, url, html=None):
        """Load ``url`` (with ``html`` as its document, when given) until the load event and an idle network:
        ``{status, responses, failed}`` - the document's status, every response's (url, status, type) and every failed
        request's (type, error)."""
        self.events = []
        self._html = html
        if html is not None:
            self.call("Fetch.enable", patterns=[{"urlPattern": url, "requestStage": "Request"}])
        loader = self.call("Page.navigate", url=url).get("loaderId")

        def settled():
            # The load event, and Chromium's own "networkIdle" for this navigation: nothing asked for since.
            return any(e.get("method") == "Page.loadEventFired" for e in self.events) and any(
                e.get("method") == "Page.lifecycleEvent" and e["params"].get("name") == "networkIdle"
                and e["params"].get("loaderId") == loader for e in self.events
            )  # fmt: skip

        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while not settled():
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not load within {LOAD_TIMEOUT_S}s")
            message = json.loads(self.ws.recv(timeout=LOAD_TIMEOUT_S))
            self.events.append(message)
            self._answer(message)
        if html is not None:
            self.call("Fetch.disable")
            self._html = None
        responses = [(e["params"]["response"]["url"], e["params"]["response"]["status"], e["params"]["type"])
                     for e in self.events if e.get("method") == "Network.responseReceived"]  # fmt: skip
        failed = [(e["params"].get("type", ""), e["params"].get("errorText", "")) for e in self.events
                  if e.get("method") == "Network.loadingFailed"]  # fmt: skip
        document = next((status for _url, status, kind in responses if kind == "Document"), None)
        return {"status": document, "responses": responses, "failed": failed}

    def html(self):
        return self.call("Runtime.evaluate", expression="document.documentElement.outerHTML")["result"]["value"]

    def text(self):
        return self.call("Runtime.evaluate", expression="document.body.innerText")["result"]["value"]

    def screenshot(self, path):
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        Path(path).write_bytes(data)
        return Path(path)

    def close(self):
        if getattr(self, "ws", None):
            self.ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=10)
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def differing_pixels(first, second):
    """The share of pixels that differ between two screenshots of one size (1.0 when sizes differ)."""
    from PIL import Image, ImageChops

    a, b = Image.open(first).convert("RGB"), Image.open(second).convert("RGB")
    if a.size != b.size:
        return 1.0
    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v else 0)
    return sum(1 for v in diff.getdata() if v) / (a.size[0] * a.size[1])
