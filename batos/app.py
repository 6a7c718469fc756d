"""The kernel process: ``main``, the event loop, signals, the parent poller, shutdown.

One direction: this module builds the ``Kernel`` (the service), the ``Server``
(the socket, given the handler table) and the ``Shutdown`` they share, then
serves until a shutdown is requested by a signal, a ``shutdown`` request or the
death of the supervising watchdog, all the same path: the server stops reading,
in-flight requests drain (``SHUTDOWN_TIMEOUT_S``), the kernel closes.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import zmq
import zmq.asyncio

import config
from batos import introspection
from batos.handlers import HANDLERS
from batos.image import ImageError
from batos.kernel import Kernel
from batos.server import Server
from batos.shutdown import Shutdown

log = logging.getLogger("batos.app")
PARENT_POLL_S = 0.5


async def watch_parent(watchdog_pid: int, shutdown: Shutdown) -> None:
    """Started by a watchdog: if it dies, stop cleanly rather than run unsupervised."""
    while not shutdown.requested:
        if os.getppid() != watchdog_pid:
            log.warning("kernel: the watchdog (pid %d) is gone", watchdog_pid)
            shutdown.request(f"the watchdog (pid {watchdog_pid}) is gone")
            return
        await asyncio.sleep(PARENT_POLL_S)


async def serve(settings: config.Settings) -> int:
    """Run the kernel until a shutdown is requested; the process's exit status."""
    shutdown = Shutdown()
    kernel = Kernel(settings, shutdown)
    ctx = zmq.asyncio.Context()
    server = Server(kernel, HANDLERS, ctx, shutdown)
    try:
        server.bind()
    except zmq.ZMQError as exc:
        log.error("kernel: cannot bind %s: %s", settings.ZMQ_ENDPOINT, exc)
        kernel.image.close()
        ctx.term()
        return 4
    await kernel.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shutdown.request, f"received {signal.Signals(signum).name}")
    watchdog_pid = os.environ.get("BATOS_WATCHDOG_PID")
    if watchdog_pid:
        asyncio.ensure_future(watch_parent(int(watchdog_pid), shutdown))
    log.info("kernel: serving on %s (image %s, %s)", settings.ZMQ_ENDPOINT, kernel.image.path,
             "new" if kernel.image.created else "resumed")
    log.info("System is live. Awaiting Architect's command...")
    genesis_task = asyncio.ensure_future(introspection.run(kernel)) if settings.GENESIS else None
    try:
        await server.serve_forever()
    finally:
        shutdown.request("the server stopped")      # a no-op after a real request
        if genesis_task is not None and not genesis_task.done():
            genesis_task.cancel()                    # its cycle stops with the others
        await server.drain(settings.SHUTDOWN_TIMEOUT_S)
        await kernel.close()
        server.close()
        ctx.term()
        log.info("kernel: stopped")
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m batos", description="The BAT OS kernel.")
    ap.add_argument("--home", help="BATOS_HOME: where the image, blobs and log live")
    ap.add_argument("--endpoint", help="ZMQ_ENDPOINT to bind, e.g. tcp://127.0.0.1:5555")
    ap.add_argument("--log-level", help="LOG_LEVEL: DEBUG, INFO, WARNING or ERROR")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        settings = config.load(HOME=Path(args.home) if args.home else None, ZMQ_ENDPOINT=args.endpoint,
                               LOG_LEVEL=args.log_level)
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.LOG_LEVEL.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        return asyncio.run(serve(settings))
    except ImageError as exc:
        print(exc, file=sys.stderr)
        return 3
