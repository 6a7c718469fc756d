"""The llama.cpp backend: one long-lived ``Llama`` per model file, used under a lock."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from batos.llm.base import Generation, GenerationError


def gpu_layers(setting: int) -> int:
    """llama.cpp's ``n_gpu_layers`` for ``LLM_N_GPU_LAYERS``: -1 means every layer when
    this llama-cpp-python build can offload (CUDA, Metal, Vulkan...), else 0."""
    if setting >= 0:
        return setting
    try:
        from llama_cpp import llama_supports_gpu_offload
    except ImportError:
        return 0
    return -1 if llama_supports_gpu_offload() else 0


class LlamaBackend:
    kind = "llama.cpp"

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int, seed: int, n_gpu_layers: int = -1):
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.seed = seed
        self.n_gpu_layers = n_gpu_layers    # the setting; resolved by gpu_layers() at load
        self._llm: Any = None
        self._lock = threading.Lock()       # a Llama is not thread-safe
        self._grammars: dict[str, Any] = {}  # {schema json -> LlamaGrammar}
        self.load_seconds = 0.0

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._llm is not None:
            return
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise GenerationError("llama-cpp-python is not installed; run ./puter.sh setup") from exc
        t0 = time.monotonic()
        try:
            self._llm = Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                              n_threads_batch=self.n_threads,
                              n_gpu_layers=gpu_layers(self.n_gpu_layers), seed=self.seed,
                              verbose=False)
        except Exception as exc:
            raise GenerationError(f"llama.cpp could not load {self.path}: {exc}") from exc
        self.load_seconds = time.monotonic() - t0

    def unload(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
            self._grammars.clear()
        if llm is not None:
            llm.close()

    def _grammar(self, schema: dict) -> Any:
        from llama_cpp import LlamaGrammar
        key = json.dumps(schema)     # in the schema's own order: properties are generated in it
        grammar = self._grammars.get(key)
        if grammar is None:
            grammar = LlamaGrammar.from_json_schema(key, verbose=False)
            self._grammars[key] = grammar
        return grammar

    def chat(self, messages: list[dict], *, max_tokens: int, temperature: float,
             schema: dict | None = None, cancel: threading.Event | None = None,
             seed: int | None = None) -> Generation:
        """One chat completion; streamed, so that ``cancel`` can stop it between tokens.
        ``seed`` (default: the backend's) varies sampled answers."""
        with self._lock:
            self._load_locked()
            kwargs: dict[str, Any] = {}
            if schema is not None:
                kwargs["grammar"] = self._grammar(schema)
            t0 = time.monotonic()
            pieces: list[str] = []
            n_chunks, finish = 0, ""
            try:
                stream = self._llm.create_chat_completion(
                    messages=messages, max_tokens=max_tokens, temperature=temperature,
                    seed=self.seed if seed is None else seed, stream=True, **kwargs)
                for chunk in stream:
                    choice = chunk["choices"][0]
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        pieces.append(text)
                        n_chunks += 1
                    finish = choice.get("finish_reason") or finish
                    if cancel is not None and cancel.is_set():
                        finish = "cancelled"
                        break
            except Exception as exc:
                raise GenerationError(f"llama.cpp failed to generate: {type(exc).__name__}: {exc}") from exc
            seconds = time.monotonic() - t0
            in_context = int(getattr(self._llm, "n_tokens", 0))
        return Generation(text="".join(pieces), prompt_tokens=max(0, in_context - n_chunks),
                          completion_tokens=n_chunks, seconds=seconds, finish_reason=finish,
                          model=self.path.name)
