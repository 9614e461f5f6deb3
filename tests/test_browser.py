"""A real browser against the daemon (issue 16): headless Chromium loads a page from a second
local port whose script calls the API with the token. Blocked by default (the CORS preflight is
refused); allowed, with the JSON readable, once the page's origin is in `[server]
allow_origins`. Debian's `chromium` package; `.ci/run` installs it."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import make_vault
from daemon_helpers import FAST_CONFIG, env_for, running_daemon

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine "
                                 "(Debian/Ubuntu: apt-get install chromium; .ci/run does)")]

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
fetch("http://localhost:%(api)d/embed", {method: "POST",
      headers: {"Authorization": "Bearer %(token)s", "Content-Type": "application/json"},
      body: JSON.stringify({texts: ["from a browser"]})})
  .then(r => r.json().then(j => "answered " + r.status + " " + j.model + " " + j.vectors.length))
  .catch(e => "blocked " + e)
  .then(t => { document.getElementById("out").textContent = t; });
</script></body></html>"""


class Page:
    """A page server on its own port: a different origin from the daemon's."""

    def __init__(self) -> None:
        self.html = ""
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib naming
                body = page.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def page() -> Iterator[Page]:
    served = Page()
    try:
        yield served
    finally:
        served.httpd.shutdown()
        served.httpd.server_close()


def browse(url: str, profile: Path) -> str:
    """The page's text after its script ran, as headless Chromium renders it."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90)
    assert "<pre" in done.stdout, done.stderr[-2000:]
    return done.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0]


def run_page(tmp_path: Path, page: Page, config: str) -> str:
    root = make_vault(tmp_path, config=config)
    with running_daemon(root, env_for(tmp_path)) as up:
        page.html = PAGE % {"api": up.port, "token": up.token}
        return browse(f"{page.origin}/", tmp_path / "chromium-profile")


def test_a_web_page_is_blocked_by_default(tmp_path: Path, page: Page) -> None:
    outcome = run_page(tmp_path, page, FAST_CONFIG)
    assert outcome.startswith("blocked"), outcome


def test_a_listed_origin_gets_cors_headers_and_reads_the_answer(tmp_path: Path,
                                                                page: Page) -> None:
    config = FAST_CONFIG.replace("[server]\n", f'[server]\nallow_origins = ["{page.origin}", '
                                               '"app://obsidian.md"]\n')
    outcome = run_page(tmp_path, page, config)
    assert outcome == "answered 200 hash-256 1", outcome
