"""``python -m watchdog``: keep one kernel alive, and upgrade it on demand.

The kernel is restarted when it exits (the watchdog waits on the child, so it
knows at once) or when it stops answering ``ping`` for WATCHDOG_HANG_TIMEOUT_S
(killed first).  Crash loops back off.  SIGINT or SIGTERM stops the kernel by
the ladder and then the watchdog.  An ``update_instructions.json`` in
BATOS_HOME (UPDATE_INSTRUCTIONS_FILE) is applied as ``watchdog/upgrade.py`` says.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import config
from client.connection import Connection, KernelUnavailable
from watchdog import upgrade
from watchdog.process import KernelProcess
from watchdog.restarter import Restarter

log = logging.getLogger("watchdog")


class Watchdog:
    def __init__(self, settings: config.Settings):
        self.settings = settings
        self.wake = threading.Event()        # the kernel exited, or the watchdog is stopping
        self.kernel = KernelProcess(settings, settings.HOME / "kernel.log", self.wake)
        self.restarter = Restarter(settings.WATCHDOG_STABLE_S, settings.WATCHDOG_BACKOFF_MAX_S)
        self.stopping = threading.Event()
        self.instructions = settings.path(settings.UPDATE_INSTRUCTIONS_FILE)

    # -- the kernel's life --------------------------------------------------------
    def launch(self, reason: str) -> bool:
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
        conn = Connection(self.settings.ZMQ_ENDPOINT, timeout_s=self.settings.WATCHDOG_PING_INTERVAL_S)
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
                        self.upgrade()
                        conn.reconnect()
                        last_pong = time.monotonic()
                self.wake.wait(max(0.0, self.settings.WATCHDOG_PING_INTERVAL_S - (time.monotonic() - t0)))
                self.wake.clear()
        finally:
            conn.close()
            how = self.kernel.stop()
            log.info("watchdog: kernel %s; watchdog stopped", how)
        return 0

    # -- upgrades ---------------------------------------------------------------------
    def upgrade(self) -> None:
        path, home = self.instructions, self.settings.HOME
        try:
            inst = upgrade.load(path)
        except upgrade.UpgradeError as exc:
            report = upgrade.finish(path, home, "unnamed", "rejected", {"outcome": "rejected", "reason": str(exc)})
            log.error("watchdog: rejected %s: %s (report %s); the kernel is untouched", path.name, exc, report)
            return
        log.info("watchdog: applying upgrade %s (%d steps)", inst.id, len(inst.steps))
        report: dict = {"id": inst.id, "started_at": time.time(), "steps": []}
        t_down = time.monotonic()
        report["stop"] = self.kernel.stop()
        revision = upgrade.git_revision()
        report["revision_before"] = revision
        saved = upgrade.backup(self.settings, home / "backups" / f"{inst.id}-{int(time.time())}")
        report["backup"] = str(saved)
        previous = config.read_overrides(home)
        report["steps"] = upgrade.run_steps(inst.steps, self.settings.UPGRADE_STEP_TIMEOUT_S)
        ok = all(s.get("exit_code") == 0 for s in report["steps"]) and len(report["steps"]) == len(inst.steps)
        if ok:
            report["settings"] = upgrade.settings_updates(inst)
            if report["settings"]:
                config.write_overrides(home, report["settings"])
            ok = self.launch(f"upgrade {inst.id}")
            if not ok:
                report["reason"] = "the upgraded kernel did not answer ping in time"
        else:
            failed = report["steps"][-1]
            report["reason"] = f"step {failed['argv']} failed ({failed.get('error') or failed.get('exit_code')})"
        if ok:
            report["outcome"] = "applied"
        else:
            self.kernel.stop()
            if revision and upgrade.git_revision() != revision:
                report["revision_restored"] = upgrade.restore_revision(revision)
            upgrade.restore(self.settings, saved)
            (home / config.OVERRIDES_FILE).unlink(missing_ok=True)
            if previous:
                config.write_overrides(home, previous)
            report["outcome"] = "failed"
            report["rolled_back"] = self.launch(f"rollback of {inst.id}")
        report["downtime_s"] = round(time.monotonic() - t_down, 3)
        report["revision_after"] = upgrade.git_revision()
        where = upgrade.finish(path, home, inst.id, report["outcome"], report)
        log.info("watchdog: upgrade %s %s in %.1fs (report %s)", inst.id, report["outcome"],
                 report["downtime_s"], where)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m watchdog", description="The BAT OS watchdog.")
    ap.add_argument("--home", help="BATOS_HOME")
    ap.add_argument("--endpoint", help="the kernel's ZMQ_ENDPOINT")
    args = ap.parse_args(argv)
    try:
        settings = config.load(HOME=Path(args.home) if args.home else None, ZMQ_ENDPOINT=args.endpoint)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.LOG_LEVEL.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    settings.HOME.mkdir(parents=True, exist_ok=True)
    dog = Watchdog(settings)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("watchdog: received %s; stopping", signal.Signals(signum).name)
        dog.stopping.set()
        dog.wake.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return dog.run()


if __name__ == "__main__":
    sys.exit(main())
