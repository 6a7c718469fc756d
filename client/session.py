"""What the terminal and the scripting modes share: the kernel connection, the target's
methods for grounding, the translator, and sending a command with its progress."""
from __future__ import annotations

import time
from typing import Any, Callable

from client.connection import Connection, CurveRefused, KernelError, KernelUnavailable
from client.translator import (ParserModelUnavailable, Translator, find_parser_model,
                               object_command, validate, warn)


class Session:
    def __init__(self, endpoint: str, target: str = "genesis_obj", *, timeout_s: float = 900.0,
                 notify: Callable[[str], None] = warn, n_gpu_layers: int = -1, curve: Any = None):
        self.endpoint = endpoint
        self.curve = curve                 # batos.curve.ClientKeys when CURVE is on
        self.n_gpu_layers = n_gpu_layers   # LLM_N_GPU_LAYERS for the parser model
        self.target = target
        self.timeout_s = timeout_s
        self.notify = notify
        self.conn = Connection(endpoint, timeout_s=10.0, curve=curve)
        self.translator: Translator | None = None
        self.translator_error: str | None = None

    def close(self) -> None:
        self.conn.close()

    # -- the kernel ---------------------------------------------------------------
    def alive(self, timeout_s: float = 1.0) -> bool:
        """True when the kernel answers ping; a refused CURVE handshake is raised, not False."""
        with Connection(self.endpoint, timeout_s=timeout_s, curve=self.curve) as probe:
            try:
                probe.call("ping")
                return True
            except CurveRefused:
                raise
            except KernelUnavailable:
                return False

    def request(self, command: dict, on_progress: Callable[[dict], None] | None = None,
                timeout_s: float | None = None) -> dict:
        """Send and wait for the final reply.  While the kernel does not answer, say so and keep
        waiting with growing pauses (the watchdog may be restarting it; ZeroMQ delivers the
        request when it is back) until ``timeout_s``."""
        rid = self.conn.send(command)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        slice_s, told = 2.0, False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise KernelUnavailable(f"no reply from the kernel at {self.endpoint} within "
                                        f"{timeout_s or self.timeout_s:g}s")
            try:
                return self.conn.wait(rid, min(slice_s, left), on_progress)
            except CurveRefused:
                self.conn.reconnect()      # a later request shakes hands afresh
                raise
            except KernelUnavailable:
                if not self.alive():
                    self.notify(f"the kernel at {self.endpoint} is not answering (down or "
                                f"restarting?); waiting, {max(0.0, deadline - time.monotonic()):.0f}s left")
                    told = True
                    slice_s = min(slice_s * 2, 16.0)
                elif told:
                    self.notify("the kernel is back; waiting for the reply")
                    told = False

    def call(self, command: str, **fields: Any) -> Any:
        reply = self.request({"command": command, **fields}, timeout_s=30.0)
        if not reply.get("ok"):
            raise KernelError(reply)
        return reply["result"]

    def methods(self, target: str | None = None) -> list[dict]:
        return self.call("describe", target_oid=target or self.target)["methods"]

    # -- translation --------------------------------------------------------------------
    def get_translator(self) -> Translator:
        if self.translator is None:
            if self.translator_error:
                raise ParserModelUnavailable(self.translator_error)
            kernel_path = None
            try:
                if self.alive():
                    kernel_path = self.call("get_parser_model").get("path")
            except (KernelError, KernelUnavailable):
                kernel_path = None
            try:
                self.translator = Translator(find_parser_model(kernel_path, self.notify),
                                             n_gpu_layers=self.n_gpu_layers)
                self.translator.load()
            except ParserModelUnavailable as exc:
                self.translator, self.translator_error = None, str(exc)
                raise
        return self.translator

    def translate(self, text: str, methods: list[dict] | None = None) -> dict:
        """The command for ``text``: a request for a new object or a copy is read without the
        model (``object_command``); anything else goes to the parser model."""
        command = self.object_request(text)
        if command is not None:
            return validate(command)
        if methods is None:
            if self.alive():
                methods = self.methods()
            else:
                self.notify("the kernel is not answering: translating without the target's methods")
                methods = []
        return self.get_translator().translate(text, self.target, methods)

    def object_request(self, text: str) -> dict | None:
        command = object_command(text, self.target)
        if command and command["command"] == "clone" and command["target_oid"] != self.target:
            # a named original: resolve it among the image's objects (a name, or an oid)
            try:
                objects = self.call("list_objects")
            except (KernelError, KernelUnavailable):
                return command
            command = object_command(text, self.target, objects if isinstance(objects, list) else [])
        return command
