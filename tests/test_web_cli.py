"""`outreach web` alone, and the web options of `outreach run`, as an operator runs them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.acceptance


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _outreach(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**{k: v for k, v in os.environ.items() if k != "OUTREACH_DB"}, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "outreach.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def _health(port: int, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                return dict(json.loads(answer.read()))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_outreach_web_serves_alone_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    port = _free_port()
    proc = _outreach("web", "--listen", f"127.0.0.1:{port}", cwd=tmp_path)
    try:
        assert _health(port) == {"status": "ok", "checks": {"database": "ok"}}  # no loops of its own
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"outreach_unsubscribes_total 0.0" in answer.read()
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert _health(port)["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"web endpoints on http://127.0.0.1:{port}" in err and "rules reloaded" in err and "stopped" in err
    assert "Traceback" not in err


def test_a_bad_listen_address_is_a_usage_error(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    for command in (["run", "--listen", "nowhere"], ["web", "--listen", "127.0.0.1:99999"]):
        proc = _outreach(*command, cwd=tmp_path)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (command, err)
        assert "give HOST:PORT" in err and "Traceback" not in err


def test_a_taken_address_stops_outreach_web_with_a_message(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = _outreach("web", "--listen", f"127.0.0.1:{taken.getsockname()[1]}", cwd=tmp_path)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "cannot listen" in err and "Traceback" not in err
