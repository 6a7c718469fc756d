"""The supervisor loop: keep one kernel alive, and hand it to an upgrade on demand.

The kernel is restarted when it exits (a thread waits on the child, so the loop
knows at once) or when it stops answering ``ping`` for WATCHDOG_HANG_TIMEOUT_S
(killed first); the Restarter says how long to wait first.  Every
UPGRADE_POLL_S the loop looks for ``update_instructions.json`` in BATOS_HOME
(UPDATE_INSTRUCTIONS_FILE) and, if present, runs ``upgrade.apply``.  ``stop()``
ends the loop, and the kernel is stopped by the ladder.
"""
from __future__ import annotations

import logging
import os
import threading
import time

import config
from client.connection import Connection, KernelUnavailable
from watchdog import upgrade
from watchdog.process import KernelProcess
from watchdog.restarter import Restarter

log = logging.getLogger("watchdog")


class Supervisor:
    def __init__(self, settings: config.Settings):
        self.settings = settings
        self.wake = threading.Event()        # the kernel exited, or the watchdog is stopping
        self.kernel = KernelProcess(settings, settings.HOME / "kernel.log", self.wake)
        self.restarter = Restarter(settings.WATCHDOG_STABLE_S, settings.WATCHDOG_BACKOFF_MAX_S)
        self.stopping = threading.Event()
        self.instructions = settings.path(settings.UPDATE_INSTRUCTIONS_FILE)

    def stop(self) -> None:
        """End ``run`` (safe from a signal handler); it stops the kernel on its way out."""
        self.stopping.set()
        self.wake.set()

    # -- the kernel's life --------------------------------------------------------
    def launch(self, reason: str) -> bool:
        """Start the kernel and wait for its first pong; True if it answered in time."""
        t0 = time.monotonic()
        self.kernel.start()
        ready = self.kernel.wait_ready(self.settings.WATCHDOG_START_TIMEOUT_S)
        if ready:
            log.info("watchdog: kernel pid %d serving (%s) after %.2fs", self.kernel.pid, reason,
                     time.monotonic() - t0)
        elif not self.kernel.exited.is_set():
            log.error("watchdog: kernel pid %d did not answer ping within %.0fs; killing it",
                      self.kernel.pid, self.settings.WATCHDOG_START_TIMEOUT_S)
            self.kernel.kill()
            self.kernel.exited.wait(10)
        return ready

    def restart(self, reason: str) -> None:
        uptime = time.monotonic() - self.kernel.started_at
        delay = self.restarter.delay(uptime)
        log.warning("watchdog: restarting the kernel (%s; restart %d, %d in a row, in %.1fs)",
                    reason, self.restarter.total, self.restarter.streak, delay)
        if self.restarter.wait(delay, self.stopping):
            self.launch(f"restart after: {reason}")

    def run(self) -> int:
        log.info("watchdog: pid %s supervising a kernel on %s (home %s)",
                 os.getpid(), self.settings.ZMQ_ENDPOINT, self.settings.HOME)
        self.launch("first start")
        conn = Connection(self.settings.ZMQ_ENDPOINT, timeout_s=self.settings.WATCHDOG_PING_INTERVAL_S,
                          curve=self.kernel.curve)
        last_pong = time.monotonic()
        next_poll = 0.0
        try:
            while not self.stopping.is_set():
                if self.kernel.exited.is_set():
                    self.restart(self.kernel.describe_exit())
                    conn.reconnect()
                    last_pong = time.monotonic()
                    continue
                t0 = time.monotonic()
                try:
                    conn.call("ping", timeout_s=self.settings.WATCHDOG_PING_INTERVAL_S)
                    last_pong = time.monotonic()
                except KernelUnavailable:
                    conn.reconnect()
                    silent = time.monotonic() - last_pong
                    if silent > self.settings.WATCHDOG_HANG_TIMEOUT_S and not self.kernel.exited.is_set():
                        log.error("watchdog: kernel pid %d missed pings for %.1fs: hung; killing it",
                                  self.kernel.pid, silent)
                        self.kernel.kill()
                        self.kernel.exited.wait(10)
                        self.restart(f"hung: no answer to ping for {silent:.1f}s")
                        conn.reconnect()
                        last_pong = time.monotonic()
                        continue
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.settings.UPGRADE_POLL_S
                    if self.instructions.exists():
                        upgrade.apply(self.settings, self.instructions, self.kernel, self.launch)
                        conn.reconnect()
                        last_pong = time.monotonic()
                self.wake.wait(max(0.0, self.settings.WATCHDOG_PING_INTERVAL_S - (time.monotonic() - t0)))
                self.wake.clear()
        finally:
            conn.close()
            how = self.kernel.stop()
            log.info("watchdog: kernel %s; watchdog stopped", how)
        return 0
