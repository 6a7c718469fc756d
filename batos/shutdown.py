"""The kernel's one shutdown path.

A signal (SIGINT, SIGTERM), the ``shutdown`` request and the death of the
supervising watchdog all call ``Shutdown.request(reason)``; everything that must
react (running cycles are told to stop, the server stops taking work, the entry
module drains and closes) looks at this one object.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

log = logging.getLogger("batos.shutdown")


class Shutdown:
    def __init__(self) -> None:
        self.reason: str | None = None
        self._event = asyncio.Event()
        self._hooks: list[Callable[[], None]] = []   # run once, on the first request

    @property
    def requested(self) -> bool:
        return self.reason is not None

    def on_request(self, hook: Callable[[], None]) -> None:
        self._hooks.append(hook)

    def request(self, reason: str) -> None:
        """Ask the kernel to stop (on the event loop's thread); later requests are no-ops."""
        if self.reason is not None:
            return
        self.reason = reason
        log.info("kernel: shutting down (%s)", reason)
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                log.exception("shutdown: a hook failed")
        self._event.set()

    async def wait(self) -> str:
        await self._event.wait()
        return self.reason or ""
