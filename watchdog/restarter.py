"""The restart policy: crash loops back off with capped, growing delays; a kernel
that stayed up ``WATCHDOG_STABLE_S`` ends the streak.  It never gives up: at the
cap it keeps retrying and says so."""
from __future__ import annotations

import logging
import time

log = logging.getLogger("watchdog.restarter")


class Restarter:
    def __init__(self, stable_s: float, max_delay_s: float, first_delay_s: float = 0.0):
        self.stable_s = stable_s
        self.max_delay_s = max_delay_s
        self.first_delay_s = first_delay_s
        self.streak = 0           # restarts since the kernel was last stable
        self.total = 0            # restarts since the watchdog started

    def delay(self, uptime_s: float) -> float:
        """Seconds to wait before restarting a kernel that ran ``uptime_s``."""
        if uptime_s >= self.stable_s:
            self.streak = 0
        self.streak += 1
        self.total += 1
        if self.streak == 1:
            return self.first_delay_s
        # 0.5 s doubling; the exponent is bounded because 2 ** 1024 overflows a float
        # (after about 1,000 restarts in a row at the cap, hours of a crash loop)
        d = min(self.max_delay_s, 0.5 * 2 ** min(self.streak - 2, 60))
        if d >= self.max_delay_s:
            log.warning("restarter: the kernel keeps failing (%d in a row); retrying every %.0fs",
                        self.streak, self.max_delay_s)
        return d

    def wait(self, seconds: float, stop_event) -> bool:
        """Sleep, unless the watchdog is stopping; True if it should go on."""
        if stop_event.is_set():
            return False
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if stop_event.wait(min(0.1, end - time.monotonic())):
                return False
        return True
