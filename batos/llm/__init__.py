"""The kernel's models behind one small interface.

``Models.generate(persona, messages, max_tokens, grammar=None) -> str`` is the
kernel's whole view of a language model (``complete`` returns the same with
token counts and timings).  ``grammar`` is a JSON schema: the backend turns it
into a constrained-decoding grammar.  Models load lazily, on first use, so the
kernel answers ``ping`` long before any model is in memory; one model is
resident at a time.
"""
from __future__ import annotations

import threading
from typing import Any

from batos.llm.base import Generation, GenerationError
from batos.llm.embedded import ModelUnavailable, resolve_gguf
from batos.llm.llama import LlamaBackend

__all__ = ["Models", "Generation", "GenerationError", "ModelUnavailable"]


class Models:
    def __init__(self, settings: Any):
        self.settings = settings
        self._lock = threading.Lock()
        self._resident: LlamaBackend | None = None

    def source_for(self, persona: str) -> str:
        return self.settings.PERSONA_MODELS.get(persona) or \
            self.settings.PERSONA_MODELS[self.settings.DEFAULT_PERSONA_MODEL]

    def backend_for(self, persona: str) -> LlamaBackend:
        try:
            path = resolve_gguf(self.source_for(persona), self.settings.MODEL_CACHE_DIR)
        except ModelUnavailable as exc:
            raise GenerationError(str(exc)) from exc
        with self._lock:
            current = self._resident
            if current is not None and current.path == path:
                return current
            if current is not None:
                current.unload()
            s = self.settings
            self._resident = LlamaBackend(path, n_ctx=s.LLM_N_CTX, n_threads=s.LLM_N_THREADS,
                                          seed=s.LLM_SEED)
            return self._resident

    def complete(self, persona: str, messages: list[dict], max_tokens: int,
                 grammar: dict | None = None, cancel: threading.Event | None = None) -> Generation:
        backend = self.backend_for(persona)
        loaded_before = backend.loaded
        gen = backend.chat(messages, max_tokens=max_tokens, temperature=self.settings.LLM_TEMPERATURE,
                           schema=grammar, cancel=cancel)
        if not loaded_before:
            gen.load_seconds = backend.load_seconds
        return gen

    def generate(self, persona: str, messages: list[dict], max_tokens: int,
                 grammar: dict | None = None) -> str:
        return self.complete(persona, messages, max_tokens, grammar).text

    def close(self) -> None:
        with self._lock:
            if self._resident is not None:
                self._resident.unload()
                self._resident = None
