"""Models: which model each persona uses, which are resident, and one call to ask them.

``Models.complete(persona, messages, max_tokens, grammar=None, cancel=None) ->
Generation`` (text, token counts, timings) is the kernel's whole view of a language
model.  ``grammar`` is a JSON schema: the llama.cpp backend
turns it into a constrained-decoding grammar; the transformers backend asks for
JSON in the prompt.  Models load lazily, on first use, so the kernel answers
``ping`` long before any model is in memory.  Models are kept in the image by
the ModelManager (``batos/llm/manager.py``); the resident ones fit within
``MODEL_MEMORY_BUDGET_MB`` and the least recently used is unloaded to make room
(``_swap_model_in_vram``).
"""
from __future__ import annotations

import collections
import logging
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import ZODB.POSException

from batos.llm.base import Backend, Generation, GenerationError
from batos.llm.embedded import ModelUnavailable
from batos.llm.hf import TransformersBackend
from batos.llm.llama import LlamaBackend
from batos.llm.manager import (ModelManager, extract_once, find_staged_loras, hf_cached, is_hf_id,
                               local_source, missing_hint, pack_lora, sha256_file, tar_directory)

log = logging.getLogger("batos.models")


class Models:
    def __init__(self, settings: Any, image: Any = None, emit: Callable[[dict], None] | None = None):
        self.settings = settings
        self.image = image            # the Living Image, where the ModelManager keeps models
        self.emit = emit or (lambda event: None)
        self._lock = threading.RLock()
        self._resolved: dict[str, tuple[str, str, Path]] = {}   # {source -> (sha256, kind, load path)}
        self._residents: collections.OrderedDict[str, Backend] = collections.OrderedDict()  # {sha -> backend}

    # -- sources ------------------------------------------------------------------
    def source_for(self, persona: str) -> str:
        return self.settings.PERSONA_MODELS.get(persona) or \
            self.settings.PERSONA_MODELS[self.settings.DEFAULT_PERSONA_MODEL]

    def _cache_dir(self, sha: str) -> Path:
        return self.settings.HOME / "model_cache" / sha

    def resolve(self, source: str) -> tuple[str, str, Path]:
        """(sha256, kind, local path to load) of a source, stored in the image once."""
        with self._lock:
            if source in self._resolved:
                return self._resolved[source]
            try:
                resolved = self._resolve(source)
            except ModelUnavailable as exc:
                raise GenerationError(str(exc)) from exc
            self._resolved[source] = resolved
            return resolved

    def _resolve(self, source: str) -> tuple[str, str, Path]:
        if self.image is None:   # no image (unit use): load the source where it is
            path, kind, sha = local_source(source, self.settings.MODEL_CACHE_DIR)
            return sha or (sha256_file(path) if kind == "gguf" else path.name), kind, path
        with self.image.reading() as s:
            manager: ModelManager = s.root["models"]
            sha = manager.sources.get(source)
            record = manager.models.get(sha) if sha else None
            if record is not None:
                try:
                    return sha, record.kind, self._load_path(record)
                except (OSError, tarfile.TarError, ZODB.POSException.POSKeyError) as exc:
                    broken = f"{type(exc).__name__}: {exc}"
                else:
                    broken = None
        if record is not None and broken:
            self._forget(source, sha, broken)
        path, kind, sha = local_source(source, self.settings.MODEL_CACHE_DIR)
        t0 = time.monotonic()
        blob_dir = Path(self.image.blob_dir)
        with tempfile.TemporaryDirectory(dir=blob_dir / "tmp") as tmp:
            if kind == "transformers":
                stored = Path(tmp) / "model.tar"
                sha = tar_directory(path, stored)
                # extracted (where it will be loaded from) before anything is committed:
                # an archive that cannot be extracted is never stored
                extract_once(str(stored), self._cache_dir(sha))
            else:
                stored, sha = path, sha or sha256_file(path)

            def store(s: Any) -> str:
                manager = s.root["models"]
                record = manager.store_file(stored, sha, kind, source, blob_dir)
                manager.add_model(source, record)
                return sha
            self.image.transact(store, note=f"store model {source}")
        with self.image.reading() as s:
            record = s.root["models"].models[sha]
            load_path = self._load_path(record)
        self.emit({"event": "model_stored", "source": source, "sha256": sha, "kind": kind,
                   "seconds": round(time.monotonic() - t0, 3)})
        return sha, kind, load_path

    def _forget(self, source: str, sha: str, why: str) -> None:
        """Drop a stored model that cannot be loaded (an older version stored Hugging Face
        snapshots as archives of dangling links), so it is stored again from its source."""
        log.warning("models: the stored copy of %s (%s) cannot be loaded (%s); storing it again",
                    source, sha[:12], why)
        shutil.rmtree(self._cache_dir(sha), ignore_errors=True)

        def drop(s: Any) -> None:
            manager = s.root["models"]
            for name, value in list(manager.sources.items()):
                if value == sha:
                    del manager.sources[name]
            if sha in manager.models:
                del manager.models[sha]
        self.image.transact(drop, note=f"forget broken model {source}")
        self.emit({"event": "model_repaired", "source": source, "sha256": sha, "error": why})

    def _load_path(self, record: Any) -> Path:
        committed = record.blob.committed()
        if record.kind == "gguf":
            return Path(committed)
        return extract_once(committed, self._cache_dir(record.sha256))

    def check_sources(self) -> list[dict]:
        """The personas whose Hub models are neither in the image nor in the local cache
        while the Hub is off: {persona, source, message}.  Nothing is downloaded."""
        from huggingface_hub import is_offline_mode
        problems = []
        for persona in sorted(self.settings.PERSONA_MODELS):
            source = self.source_for(persona)
            if not is_hf_id(source) or Path(source).expanduser().exists():
                continue
            if self.image is not None:
                with self.image.reading() as s:
                    if source in s.root["models"].sources:
                        continue
            try:
                if hf_cached(source) or not is_offline_mode():
                    continue
                message = missing_hint(source)
            except ModelUnavailable as exc:
                message = str(exc)
            problems.append({"persona": persona, "source": source,
                             "message": f"{persona}'s model {source}: {message}"})
        return problems

    # -- residency ------------------------------------------------------------------
    def backend_for(self, persona: str) -> Backend:
        return self._backend(persona)[0]

    def reset_contexts(self) -> None:
        """Every resident llama.cpp model forgets its live context and kept prefix states
        (so two runs compared side by side start equally cold)."""
        with self._lock:
            backends = list(self._residents.values())
        for backend in backends:
            reset = getattr(backend, "reset_context", None)
            if reset is not None:
                reset()

    def transformers_path(self, persona: str) -> Path | None:
        """The directory of the persona's transformers model, or None when it runs on a
        GGUF file (LoRA adapters need transformers)."""
        backend = self.backend_for(persona)
        return backend.path if isinstance(backend, TransformersBackend) else None

    def _backend(self, persona: str) -> tuple[Backend, float]:
        """(the persona's backend, seconds spent loading it now: 0 when it was resident)."""
        source = self.source_for(persona)
        try:
            sha, kind, path = self.resolve(source)
        except GenerationError as exc:
            raise GenerationError(f"{persona}'s model {source}: {exc}") from exc
        with self._lock:
            backend = self._residents.get(sha)
            if backend is not None:
                self._residents.move_to_end(sha)
                return backend, 0.0
            backend = self._swap_model_in_vram(persona, sha, kind, path)
            return backend, backend.load_seconds

    def _swap_model_in_vram(self, persona: str, sha: str, kind: str, path: Path) -> Backend:
        """Make room within the memory budget (least recently used first), then load."""
        t0 = time.monotonic()
        budget = self.settings.MODEL_MEMORY_BUDGET_MB * (1 << 20)
        need = _footprint(path)
        unloaded = []
        while self._residents and sum(_footprint(b.path) for b in self._residents.values()) + need > budget:
            _, old = self._residents.popitem(last=False)
            old.unload()
            unloaded.append(old.path.name)
        s = self.settings
        if kind == "gguf":
            backend = LlamaBackend(path, n_ctx=s.LLM_N_CTX, n_threads=s.LLM_N_THREADS, seed=s.LLM_SEED,
                                   n_gpu_layers=s.LLM_N_GPU_LAYERS,
                                   prefix_cache_bytes=s.LLM_PREFIX_CACHE_MB << 20)
        else:
            backend = TransformersBackend(path, seed=s.LLM_SEED, memory_budget_mb=s.MODEL_MEMORY_BUDGET_MB,
                                          cpu_dtype=s.TRANSFORMERS_CPU_DTYPE)
        backend.load()
        self._residents[sha] = backend
        self.emit({"event": "model_swap", "persona": persona, "model": path.name, "kind": kind,
                   "sha256": sha, "unloaded": unloaded, "load_s": round(backend.load_seconds, 3),
                   "swap_s": round(time.monotonic() - t0, 3),
                   "resident": [b.path.name for b in self._residents.values()]})
        return backend

    @property
    def resident(self) -> list[str]:
        with self._lock:
            return [b.path.name for b in self._residents.values()]

    # -- LoRA ---------------------------------------------------------------------------
    def lora_for(self, persona: str) -> str | None:
        if self.image is None:
            return None
        with self.image.reading() as s:
            return s.root["models"].persona_loras.get(persona)

    def _lora_path(self, name: str) -> Path:
        with self.image.reading() as s:
            record = s.root["models"].loras.get(name)
            if record is None:
                raise GenerationError(f"no LoRA adapter named {name!r} in the image (ingest_lora)")
            return extract_once(record.blob.committed(), self._cache_dir(f"lora-{record.sha256}"))

    def ingest_loras(self, name: str | None = None, persona: str | None = None) -> list[dict]:
        """Store the adapters staged in LORA_STAGING_DIR (or only ``name``); optionally
        select one for a persona.  Returns what was ingested."""
        staging = self.settings.path(self.settings.LORA_STAGING_DIR)
        staged = find_staged_loras(staging)
        if name is not None:
            if name not in staged:
                raise ModelUnavailable(f"no adapter {name!r} in {staging} (found: {sorted(staged) or 'none'})")
            staged = {name: staged[name]}
        if not staged and persona is None:
            raise ModelUnavailable(f"no LoRA adapter is staged in {staging}: put a PEFT adapter "
                                   "directory (with adapter_config.json) or NAME.safetensors with "
                                   "NAME.json there")
        blob_dir = Path(self.image.blob_dir)
        done = []
        with tempfile.TemporaryDirectory(dir=blob_dir / "tmp") as tmp:
            packed = {}
            for lora_name, path in staged.items():
                out = Path(tmp) / f"{lora_name}.tar"
                packed[lora_name] = (out, *pack_lora(lora_name, path, out))

            def store(s: Any) -> list[dict]:
                manager = s.root["models"]
                out_list = []
                for lora_name, (out, sha, meta) in packed.items():
                    current = manager.loras.get(lora_name)
                    if current is None or current.sha256 != sha:
                        manager.loras[lora_name] = manager.store_file(out, sha, "lora", lora_name,
                                                                      blob_dir, meta)
                    out_list.append(manager.loras[lora_name].summary())
                if persona is not None:
                    selected = name or (next(iter(packed)) if len(packed) == 1 else None)
                    if selected is None or selected not in manager.loras:
                        raise ModelUnavailable("say which adapter the persona takes: give 'name'")
                    manager.persona_loras[persona] = selected
                return out_list
            done = self.image.transact(store, note="ingest LoRA adapters")
        self.emit({"event": "lora_ingested", "adapters": [d["name"] for d in done], "persona": persona})
        return done

    # -- generation -------------------------------------------------------------------
    def complete(self, persona: str, messages: list[dict], max_tokens: int,
                 grammar: dict | None = None, cancel: threading.Event | None = None,
                 temperature: float | None = None, seed: int | None = None,
                 stop_after_code: bool = False, adapter: tuple[str, Path] | None = None) -> Generation:
        """One answer; ``temperature`` and ``seed`` override the settings' for this call;
        ``stop_after_code``: the answer ends when its first fenced code block closes;
        ``adapter`` (name, directory): this LoRA adapter instead of the persona's (the
        self-tuning loop's practice of an adapter not yet adopted)."""
        backend, load_seconds = self._ready(persona, adapter)
        gen = backend.chat(messages, max_tokens=max_tokens,
                           temperature=self.settings.LLM_TEMPERATURE if temperature is None else temperature,
                           schema=grammar, cancel=cancel, seed=seed,
                           stop_after_code=stop_after_code)
        gen.load_seconds = load_seconds
        return gen

    def complete_text(self, persona: str, prompt: str, max_tokens: int, *,
                      temperature: float | None = None, seed: int | None = None,
                      stop: list[str] | None = None, cancel: threading.Event | None = None,
                      adapter: tuple[str, Path] | None = None) -> Generation:
        """A plain completion of ``prompt`` by ``persona``'s model, no chat template (the
        code-completion candidates); as ``complete`` otherwise."""
        backend, load_seconds = self._ready(persona, adapter)
        gen = backend.complete_text(
            prompt, max_tokens=max_tokens, cancel=cancel, seed=seed, stop=stop,
            temperature=self.settings.LLM_TEMPERATURE if temperature is None else temperature)
        gen.load_seconds = load_seconds
        return gen

    def _ready(self, persona: str, adapter: tuple[str, Path] | None) -> tuple[Backend, float]:
        """``persona``'s backend, loaded, with its LoRA adapter (or ``adapter``) in place."""
        backend, load_seconds = self._backend(persona)
        lora = self.lora_for(persona) if adapter is None else adapter[0]
        if isinstance(backend, TransformersBackend):
            if adapter is not None:
                backend.use_adapter(adapter[0], adapter[1])
            else:
                backend.use_adapter(lora, self._lora_path(lora) if lora else None)
        elif lora:
            raise GenerationError(f"{persona} has the LoRA adapter {lora!r}, but its model is a GGUF "
                                  "file; LoRA adapters need a transformers model")
        return backend, load_seconds

    def parser_model(self) -> dict:
        """The client's parser model: the embedded GGUF, as the image keeps it."""
        sha, kind, path = self.resolve("embedded")
        return {"path": str(path), "sha256": sha, "source": "embedded", "kind": kind}

    def close(self) -> None:
        with self._lock:
            for backend in self._residents.values():
                backend.unload()
            self._residents.clear()


def _footprint(path: Path) -> int:
    """Bytes a model takes in memory, roughly: its weights' size on disk."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt"))
