"""``python -m watchdog``: keep one kernel alive (watchdog/supervisor.py), and
upgrade it on demand (watchdog/upgrade.py).  SIGINT or SIGTERM stops the kernel
by the ladder and then the watchdog."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import config
from watchdog.supervisor import Supervisor

log = logging.getLogger("watchdog")


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
    supervisor = Supervisor(settings)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("watchdog: received %s; stopping", signal.Signals(signum).name)
        supervisor.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
