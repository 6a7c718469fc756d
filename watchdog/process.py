"""Launching and stopping one kernel process.

The watchdog learns of the kernel's exit at once: a thread waits on the child.
Stopping follows the ladder: ask (a ``shutdown`` request) -> wait -> SIGTERM ->
wait -> SIGKILL, each wait a setting.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from batos import curve
from client.connection import Connection, KernelError, KernelUnavailable

log = logging.getLogger("watchdog.process")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class KernelProcess:
    def __init__(self, settings: Any, log_path: Path, wake: threading.Event | None = None):
        self.settings = settings
        self.log_path = log_path
        self.wake = wake or threading.Event()   # set when the kernel exits (the supervisor waits on it)
        self.proc: subprocess.Popen | None = None
        self.exited = threading.Event()
        self.started_at = 0.0
        self.curve: curve.ClientKeys | None = None   # the local pair, when CURVE is on

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        env = dict(os.environ)
        env["BATOS_WATCHDOG_PID"] = str(os.getpid())
        env["BATOS_HOME"] = str(self.settings.HOME)
        env["BATOS_ZMQ_ENDPOINT"] = self.settings.ZMQ_ENDPOINT
        if self.settings.curve_enabled:
            # made here if missing (the kernel would make the same), so the pings can connect
            # before the kernel is up; a CurveError stops the watchdog with its message
            curve.ensure_kernel_certificates(self.settings.HOME)
            self.curve = curve.client_keys(self.settings, str(curve.curve_dir(self.settings.HOME) / "server.key"),
                                           str(curve.curve_dir(self.settings.HOME) / "local.key_secret"))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "batos"], cwd=PROJECT_ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         close_fds=True)
        self.started_at = time.monotonic()
        self.exited = threading.Event()
        proc, exited, wake = self.proc, self.exited, self.wake
        threading.Thread(target=lambda: (proc.wait(), exited.set(), wake.set()), name="kernel-wait",
                         daemon=True).start()

    def describe_exit(self) -> str:
        code = self.proc.returncode if self.proc else None
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def wait_ready(self, timeout_s: float) -> bool:
        """True once the kernel answers ping; False if it exits or the time runs out."""
        deadline = time.monotonic() + timeout_s
        # one socket throughout: pings queue until the kernel binds, then are answered at once
        with Connection(self.settings.ZMQ_ENDPOINT, timeout_s=0.1, curve=self.curve) as conn:
            while time.monotonic() < deadline:
                if self.exited.is_set():
                    return False
                try:
                    conn.call("ping", timeout_s=0.1)
                    return True
                except KernelUnavailable:
                    continue
        return False

    def stop(self) -> str:
        """The stop ladder; returns how the kernel ended."""
        if self.proc is None or self.exited.is_set():
            return self.describe_exit()
        s = self.settings
        try:
            with Connection(s.ZMQ_ENDPOINT, timeout_s=2.0, curve=self.curve) as conn:
                conn.call("shutdown", timeout_s=2.0)
        except (KernelUnavailable, KernelError):
            pass
        if self.exited.wait(s.STOP_ASK_TIMEOUT_S):
            return "stopped when asked"
        log.warning("process: the kernel did not stop when asked; sending SIGTERM")
        self.signal(signal.SIGTERM)
        if self.exited.wait(s.STOP_TERM_TIMEOUT_S):
            return "stopped by SIGTERM"
        log.warning("process: the kernel ignored SIGTERM; sending SIGKILL")
        self.kill()
        self.exited.wait(10)
        return "killed by SIGKILL"

    def kill(self) -> None:
        """SIGKILL (TerminateProcess on Windows)."""
        try:
            if self.proc is not None:
                self.proc.kill()
        except ProcessLookupError:
            pass

    def signal(self, signum: int) -> None:
        try:
            if self.proc is not None:
                self.proc.send_signal(signum)
        except ProcessLookupError:
            pass
