"""metacognition.jsonl: one JSON object per line for every cycle event, via aiologger.

Events may come from any thread (``write_threadsafe``); one consumer task on
the event loop writes them in order, and aiologger's file handler flushes each
line as it is written, so ``tail -f`` shows a cycle live.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from aiologger import Logger
from aiologger.formatters.base import Formatter
from aiologger.handlers.files import AsyncFileHandler
from aiologger.levels import LogLevel

log = logging.getLogger("batos.metalog")


class _LineFormatter(Formatter):
    def format(self, record: Any) -> str:
        return record.msg


class MetacognitionLog:
    def __init__(self, path: Path):
        self.path = path
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._logger = Logger(name=f"batos.metacognition.{id(self)}", level=LogLevel.INFO)
        handler = AsyncFileHandler(filename=str(path), mode="a", encoding="utf-8")
        handler.formatter = _LineFormatter()
        self._logger.add_handler(handler)
        self._task = asyncio.create_task(self._consume(), name="metacognition-log")

    def write(self, event: dict) -> None:
        """Queue one event (on the event loop's thread)."""
        event.setdefault("ts", time.time())
        self._queue.put_nowait(json.dumps(event, default=repr, ensure_ascii=False))

    def write_threadsafe(self, event: dict) -> None:
        self._loop.call_soon_threadsafe(self.write, event)

    async def _consume(self) -> None:
        while True:
            line = await self._queue.get()
            if line is None:
                return
            try:
                await self._logger.info(line)
            except Exception:  # a full disk must not stop the kernel
                log.exception("metalog: could not write %s", self.path)

    async def close(self) -> None:
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(self._task, 5.0)
        except asyncio.TimeoutError:
            log.warning("metalog: gave up flushing %s", self.path)
        await self._logger.shutdown()
