"""The daemon's client when the daemon dies under it (issue 12, point 14): a real daemon
process, stopped while a `vaultd search` waits for its answer, then killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_vault
from daemon_helpers import DEADLINE, FAST_CONFIG, call, env_for, wait_for

from vaultd.daemon.discovery import info_path, read_token

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # a daemon and a CLI in subprocesses


def test_a_daemon_that_dies_mid_request_is_reported_as_stopped(tmp_path: Path) -> None:
    root = make_vault(tmp_path, {"semantic/a.md": "# A\n\nbobcat sightings\n"},
                      config=FAST_CONFIG)
    env = env_for(tmp_path)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    daemon = subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(root), "run"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(info_path(root).exists, "the daemon to listen")
        port = int(json.loads(info_path(root).read_text())["port"])
        assert call(port, "GET", "/health")[0] == 200 and read_token(root)
        os.kill(daemon.pid, signal.SIGSTOP)  # the kernel still accepts; nobody answers
        search = subprocess.Popen([sys.executable, "-m", "vaultd", "--vault", str(root),
                                   "search", "bobcat"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)  # the request is sent and waits for its answer
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(DEADLINE)
        out, err = search.communicate(timeout=DEADLINE)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert search.returncode == 2, (out, err)
    assert "stopped answering" in err and "no longer running" in err, err
    assert "vaultd start" in err and "--local" in err
    assert "running but failing" not in err and "Traceback" not in err
