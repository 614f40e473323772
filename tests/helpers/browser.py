"""Headless Chromium driven over the DevTools protocol (websocket-client): open a page, read its text, click,
take screenshots, and list every address the page and its workers asked the network for. No host name
resolves (only addresses such as 127.0.0.1 connect), as on a machine without a network."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import numpy as np

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve_folder(folder) -> http.server.ThreadingHTTPServer:
    """``folder`` served on 127.0.0.1 (a free port: ``server.server_port``) from a thread, without a log line
    per request; ``server.shutdown()`` stops it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Browser:
    """One headless Chromium tab of ``width`` × ``height`` pixels (software WebGL)."""

    def __init__(self, profile, width: int, height: int):
        import websocket

        port = free_port()
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--use-gl=angle", "--use-angle=swiftshader",
             "--enable-unsafe-swiftshader", "--hide-scrollbars", "--no-first-run", "--no-default-browser-check",
             # no name resolves but this machine's: the page must work offline
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
             f"--remote-debugging-port={port}", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as answer:
                    pages = [t for t in json.load(answer) if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.2)
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60,
                                                  suppress_origin=True)
        self.socket.settimeout(None)  # the reader waits for events as long as the page lives
        self.next_id, self.requests, self.answers = 0, [], {}
        self.answered = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.call("Network.enable")
        self.call("Page.enable")
        self.call("Target.setAutoAttach", autoAttach=True, waitForDebuggerOnStart=True, flatten=True)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def _read(self) -> None:
        """Every message from Chromium: answers are kept for :meth:`call`, network events noted, and each
        worker of the page is watched from its start (its network too)."""
        import websocket

        while True:
            try:
                message = json.loads(self.socket.recv())
            except (websocket.WebSocketException, OSError, ValueError):
                return
            event = message.get("method")
            if event == "Network.requestWillBeSent":
                self.requests.append(message["params"]["request"]["url"])
            elif event == "Network.webSocketCreated":
                self.requests.append(message["params"]["url"])
            elif event == "Target.attachedToTarget":
                session = message["params"]["sessionId"]
                for number, command in enumerate(("Network.enable", "Runtime.runIfWaitingForDebugger")):
                    self.socket.send(json.dumps({"id": -1 - number, "sessionId": session, "method": command}))
            elif "id" in message and "sessionId" not in message:
                with self.answered:
                    self.answers[message["id"]] = message
                    self.answered.notify_all()

    def call(self, method: str, wait_s: float = 60.0, **params) -> dict:
        """Send one DevTools command to the page and return its result, waiting up to ``wait_s`` seconds."""
        self.next_id += 1
        number = self.next_id
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        with self.answered:
            if not self.answered.wait_for(lambda: number in self.answers, timeout=wait_s):
                raise RuntimeError(f"{method}: no answer from Chromium")
            message = self.answers.pop(number)
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message.get("result", {})

    def open(self, url: str) -> None:
        """Navigate to ``url``."""
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def screenshot(self) -> np.ndarray:
        """[H, W, 3] RGB float32 in [0, 1] of the page as shown now."""
        import cv2

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        return image[..., ::-1].astype(np.float32) / 255

    def close(self) -> None:
        """Quit Chromium."""
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        self.process.kill()
        self.process.wait(timeout=30)
