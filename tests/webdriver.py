"""A headless Chromium driven through chromedriver's W3C WebDriver protocol,
with the standard library only (JSON over HTTP): enough for the HTML report's
browser test to open a page, click, type, read text and take a screenshot.

``Browser.find()`` returns None, with the reason in ``Browser.missing``,
where no Chromium or chromedriver is installed.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1280,1600"]


class WebDriverError(Exception):
    pass


class Browser:
    missing = ""

    @classmethod
    def find(cls) -> tuple[str, str] | None:
        """(chromium, chromedriver) paths, or None (``missing`` says why)."""
        browser = next(filter(None, map(shutil.which, (
            "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))), None)
        driver = shutil.which("chromedriver")
        if browser is None or driver is None:
            cls.missing = ("no " + " and no ".join(
                name for name, path in (("Chromium", browser), ("chromedriver", driver))
                if path is None) + " on PATH (install the distribution's chromium and "
                "chromium-driver packages)")
            return None
        return browser, driver

    def __init__(self, browser: str, driver: str, timeout: float = 60.0) -> None:
        self.profile = tempfile.mkdtemp(prefix="disttest-tests-chromium-")
        self.log = open(os.path.join(self.profile, "chromedriver.log"), "w+")
        self.process = subprocess.Popen([driver, "--port=0"], stdout=self.log,
                                        stderr=subprocess.STDOUT, text=True)
        self.session = None
        try:
            self.base = f"http://127.0.0.1:{self._port(timeout)}"
            reply = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome", "goog:chromeOptions": {
                    "binary": browser,
                    "args": FLAGS + [f"--user-data-dir={self.profile}/profile"]}}}},
                timeout=timeout)
            self.session = reply["sessionId"]
        except BaseException:
            self.close()
            raise

    def _port(self, timeout: float) -> int:
        """The port chromedriver says it listens on (it chose a free one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.log.seek(0)
            match = re.search(r"started successfully on port (\d+)", self.log.read())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.log.seek(0)
        raise WebDriverError(f"chromedriver did not start: {self.log.read()[-2000:]}")

    def _call(self, method: str, path: str, body=None, timeout: float = 60.0):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                answer = json.load(reply)
        except urllib.error.HTTPError as error:
            raise WebDriverError(f"{method} {path}: {error.read().decode()[:2000]}") from None
        return answer.get("value", answer) if path != "/session" else answer.get("value")

    def _session(self, method: str, path: str, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    # -- what a test uses -------------------------------------------------------
    def open(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def all(self, css: str) -> list[str]:
        found = self._session("POST", "/elements", {"using": "css selector", "value": css})
        return [e[ELEMENT] for e in found]

    def one(self, css: str) -> str:
        found = self.all(css)
        if not found:
            raise WebDriverError(f"no element matches {css!r}")
        return found[0]

    def click(self, element: str) -> None:
        self._session("POST", f"/element/{element}/click", {})

    def type(self, element: str, text: str) -> None:
        self._session("POST", f"/element/{element}/value", {"text": text})

    def text(self, element: str) -> str:
        return self._session("GET", f"/element/{element}/text")

    def script(self, source: str, *args):
        return self._session("POST", "/execute/sync", {"script": source, "args": list(args)})

    def wait_for(self, css: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = self.all(css)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise WebDriverError(f"nothing matched {css!r} within {timeout}s")
            time.sleep(0.05)

    def screenshot(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(base64.b64decode(self._session("GET", "/screenshot")))

    def close(self) -> None:
        try:
            if self.session is not None:
                self._session("DELETE", "")  # ends the browser it started
        except (OSError, WebDriverError):
            pass
        finally:
            self.session = None
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)
