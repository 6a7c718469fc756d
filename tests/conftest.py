"""Real parts for the tests: kernel processes on free loopback ports and temporary
BATOS_HOMEs, DEALER connections whose every wait has a timeout."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from client.connection import Connection, KernelUnavailable

ROOT = Path(__file__).resolve().parent.parent


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


class CheckedConnection(Connection):
    """A client connection whose every reply to a known command is checked against the
    protocol's models (``batos.protocol.check_reply``): the contract is tested by every
    test that talks to a kernel."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self._commands: dict = {}   # {request id -> command}

    def send(self, request: dict):
        rid = super().send(request)
        self._commands[rid] = request.get("command")
        return rid

    def wait(self, request_id, timeout_s=None, on_progress=None):
        from batos import protocol as p
        command = self._commands.get(request_id)

        def checked(event):
            p.check_reply(command, event)
            if on_progress:
                on_progress(event)
        reply = super().wait(request_id, timeout_s, checked if command in p.REQUESTS else on_progress)
        if command in p.REQUESTS:
            self._commands.pop(request_id, None)
            p.check_reply(command, reply)
        return reply


class KernelProcess:
    """A real ``python -m batos`` on its own home and port."""

    def __init__(self, home: Path, env: dict | None = None):
        self.home = home
        self.endpoint = free_endpoint()
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.log_path = home / "kernel.log"

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
        # the Fractal Memory loads sentence-transformers (seconds of CPU): tests that
        # exercise it turn it on; the rest run the kernel without it
        # the Hub is off for every kernel under test: the embedded defaults must never need it
        env.update(BATOS_HOME=str(self.home), BATOS_ZMQ_ENDPOINT=self.endpoint,
                   BATOS_MEMORY_ENABLED="0", BATOS_GENESIS="0", BATOS_AUTOTELIC_INTERVAL_S="0", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1")
        env.update(self.extra_env)
        return env

    def start(self, wait_s: float = 30.0) -> "KernelProcess":
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "batos"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.wait_ready(wait_s)
        return self

    def client_keys(self, deadline: float):
        """The CURVE keys this test's clients use (None: the kernel has CURVE off)."""
        return None

    def wait_ready(self, wait_s: float) -> dict:
        deadline = time.monotonic() + wait_s
        with Connection(self.endpoint, timeout_s=0.5, curve=self.client_keys(deadline)) as conn:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kernel exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    return conn.call("ping")
                except KernelUnavailable:
                    conn.reconnect()
        raise RuntimeError(f"kernel did not answer ping within {wait_s}s:\n{self.log()}")

    def connect(self, timeout_s: float = 10.0, keys=None) -> Connection:
        return CheckedConnection(self.endpoint, timeout_s=timeout_s,
                                 curve=keys or self.client_keys(time.monotonic() + timeout_s))

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError(f"kernel ignored SIGTERM for {timeout_s}s:\n{self.log()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def wait_events(self, predicate, timeout_s: float = 10.0) -> list[dict]:
        """The log's events once ``predicate(events)`` holds (lines are flushed asynchronously)."""
        deadline = time.monotonic() + timeout_s
        while True:
            events = self.events()
            if predicate(events) or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def events(self) -> list[dict]:
        path = self.home / "metacognition.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def make_kernel(tmp_path):
    kernels: list[KernelProcess] = []

    def make(env: dict | None = None, home: Path | None = None, start: bool = True,
             cls: type = KernelProcess) -> KernelProcess:
        k = cls(home or tmp_path / f"home{len(kernels)}", env)
        kernels.append(k)
        return k.start() if start else k

    yield make
    for k in kernels:
        try:
            k.stop(10)
        except RuntimeError:
            pass
        finally:
            k.kill()


@pytest.fixture
def kernel(make_kernel) -> KernelProcess:
    return make_kernel()


@pytest.fixture
def conn(kernel):
    with kernel.connect() as c:
        yield c



class InProcessKernel:
    """The real ``Kernel`` in this process, on its own event loop: ``send`` takes the
    kernel's own call path (the object read, a real sandbox worker, the commit), for tests
    that need to reach into the image around a call."""

    def __init__(self, settings):
        import asyncio

        from batos.kernel import Kernel
        self.loop = asyncio.new_event_loop()
        self.kernel = Kernel(settings)
        self.loop.run_until_complete(self.kernel.start())
        self.image = self.kernel.image
        self.sandbox = self.kernel.sandbox

    def send(self, oid: str, selector: str, *args, **kwargs):
        return self.loop.run_until_complete(self.kernel.send(oid, selector, list(args), kwargs))["value"]

    def wait_events(self, predicate, timeout_s: float = 10.0) -> list[dict]:
        """The log's events once ``predicate(events)`` holds: its lines are written by a task
        on this kernel's loop, so the loop runs while waiting."""
        import asyncio
        path = self.kernel.settings.HOME / "metacognition.jsonl"
        deadline = time.monotonic() + timeout_s
        while True:
            events = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
            if predicate(events) or time.monotonic() > deadline:
                return events
            self.loop.run_until_complete(asyncio.sleep(0.02))

    def close(self) -> None:
        self.loop.run_until_complete(self.kernel.close())
        self.loop.close()
