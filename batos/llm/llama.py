"""The llama.cpp backend: one long-lived ``Llama`` per model file, used under a lock.

Three levers make generation cheaper without changing a greedy answer (measured side by
side by ``tests/bench/llm_levers.py``):

* **prefix states** (on by default, ``LlamaBackend(prefix_cache_bytes=...)``):
  llama-cpp-python reuses the KV cache only for the prefix a prompt shares with the
  *previous* call, and the kernel's calls alternate between personas (BRICK's plan,
  then the method), so each call decoded its whole prompt.  Before a call overwrites
  the context, the context's KV (llama.cpp sequence 0, its canonical part) is kept in
  RAM keyed by its tokens; a prompt that shares more with a kept state than with the
  live context starts from that state: a persona's system prompt and fixed rules are
  decoded once, not once per call.  Prompts are resumed only where the result is
  bitwise that of a fresh decode (``BatosLlama``), so an answer depends only on its
  prompt -- which llama-cpp-python's own reuse, resuming at any token, did not ensure.
* **stop** (``chat(stop=[...])``, llama.cpp's stop strings) and **stop_after_code**
  (``chat(stop_after_code=True)``): the answer ends as soon as its first fenced code
  block closes, the closing fence kept, instead of decoding the end-of-turn token or
  the prose a model may add after the code.

* **greedy grammar sampling** (``GreedyGrammarSampler``, for greedy answers under a
  JSON grammar): the likeliest token is checked against the grammar alone, the whole
  vocabulary only when it is refused; the same tokens, about a third less time per
  token on this CPU.

Measured and not kept: prompt-lookup decoding (llama-cpp-python's
``LlamaPromptLookupDecoding`` as a draft model).  On CPU a verification batch costs
about what its tokens cost in a prompt, and the drafts were mostly refused: it was
slower, on repairs as on first answers.  ``BatosLlama.eval`` still gives a draft model
set on the ``Llama`` the logits it needs (the benchmark uses that).
"""
from __future__ import annotations

import collections
import ctypes
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from batos.llm.base import Generation, GenerationError, code_block_closed

log = logging.getLogger(__name__)

DEFAULT_PREFIX_CACHE_BYTES = 256 << 20
PREFIX_MIN_TOKENS = 32          # a state is kept or restored only for a gain of this many tokens
# a prompt is resumed at a multiple of ALIGN tokens with at least MIN_BATCH left to decode
# (llama.cpp's CPU kernels: groups of 4 tokens; batches under 8 tokens round differently;
# twice those, for a margin)
ALIGN = 8
MIN_BATCH = 16



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


def build_lacks(cpu: set[str] | None = None) -> list[str]:
    """The CPU features the installed llama-cpp-python build needs (as set-up recorded them
    beside it) that this CPU lacks: such a build dies by SIGILL at its first generation."""
    import importlib.util
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return []
    try:
        marker = json.loads((Path(list(spec.submodule_search_locations)[0]) / ".batos-build.json").read_text())
    except (OSError, ValueError):
        return []
    if cpu is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
        line = next((x for x in text.splitlines() if x.startswith("flags")), "")
        cpu = set(line.split(":", 1)[1].split()) if ":" in line else set()
    if not cpu:
        return []
    return [f for f in marker.get("needs", ()) if f not in cpu]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def reuse_point(shared: int, n_prompt: int, n_batch: int) -> int:
    """How many of a prompt's ``n_prompt`` tokens to take from a context that holds the
    first ``shared`` of them with a canonical KV, so that the rest is decoded in the
    same layout as a fresh decode (see ``BatosLlama``)."""
    p = min(shared, n_prompt - MIN_BATCH)
    p -= p % ALIGN
    while p > 0 and p % n_batch and min(n_prompt, (p // n_batch + 1) * n_batch) - p < MIN_BATCH:
        p -= ALIGN
    return max(p, 0)


def canonical_after(p: int, n_prompt: int, n_batch: int) -> int:
    """The leading positions whose KV is canonical after a prompt decoded from ``p``: up
    to the last whole ALIGN group, unless the last chunk was small."""
    last = max(p, (n_prompt - 1) // n_batch * n_batch)
    return n_prompt - n_prompt % ALIGN if n_prompt - last >= MIN_BATCH else last


class PrefixStates:
    """KV states of earlier prompts (llama.cpp sequence 0, their canonical part), kept in
    RAM and keyed by their tokens, least recently used dropped first beyond
    ``capacity_bytes``.

    ``prepare`` runs before a prompt is decoded: when the live context is about to lose
    at least ``min_tokens`` canonical tokens, they are kept; when a kept state shares at
    least ``min_tokens`` more with the prompt than the live context does, it is
    restored.  A restored state is the bytes llama.cpp computed for those tokens in a
    canonical layout, so the answer is the one a fresh decode of the prompt gives.
    """

    def __init__(self, capacity_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
                 min_tokens: int = PREFIX_MIN_TOKENS):
        self.capacity_bytes = capacity_bytes
        self.min_tokens = min_tokens
        self._states: collections.OrderedDict[tuple[int, ...], Any] = collections.OrderedDict()
        self.bytes = 0
        self.saves = self.restores = self.restored_tokens = 0
        self.seconds = 0.0      # spent saving and restoring

    def __len__(self) -> int:
        return len(self._states)

    def clear(self) -> None:
        self._states.clear()
        self.bytes = 0

    def prepare(self, llm: Any, tokens: list[int], canonical: int, p_live: int) -> int:
        """Keep the live context or restore a kept state for the prompt ``tokens``;
        returns the reuse point (0 or more) when a kept state was restored, else -1."""
        t0 = time.perf_counter()
        try:
            # keep the live context first: keeping it may drop a kept state it covers, so
            # the best state to restore is chosen only after
            if canonical - p_live >= self.min_tokens:
                self._save(llm, tuple(llm.input_ids[:canonical].tolist()))
            best_key, best = None, p_live
            for key in self._states:
                p = reuse_point(_common_prefix(key, tokens), len(tokens), llm.n_batch)
                if p > best:
                    best_key, best = key, p
            if best_key is None or best - p_live < self.min_tokens or not self._restore(llm, best_key):
                return -1
            self.restores += 1
            self.restored_tokens += best
            return best
        finally:
            self.seconds += time.perf_counter() - t0

    def _save(self, llm: Any, key: tuple[int, ...]) -> None:
        import llama_cpp
        for other in list(self._states):
            if other[:len(key)] == key:          # a kept state already covers this one
                self._states.move_to_end(other)
                return
            if key[:len(other)] == other:        # this one covers a kept state
                self._drop(other)
        ctx = llm._ctx.ctx
        llm._ctx.kv_cache_seq_rm(0, len(key), -1)     # the KV holds exactly the key's tokens
        llm.n_tokens = len(key)
        size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or size > self.capacity_bytes:
            return
        buf = (ctypes.c_uint8 * size)()
        n = int(llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0))
        if n <= 0:
            return
        self._states[key] = (buf, n)
        self.bytes += size
        self.saves += 1
        while self.bytes > self.capacity_bytes and self._states:
            self._drop(next(iter(self._states)))

    def _drop(self, key: tuple[int, ...]) -> None:
        buf, _ = self._states.pop(key)
        self.bytes -= len(buf)

    def _restore(self, llm: Any, key: tuple[int, ...]) -> bool:
        import llama_cpp
        buf, n = self._states[key]
        self._states.move_to_end(key)
        llm._ctx.kv_cache_seq_rm(0, 0, -1)
        if int(llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buf, n, 0)) != n:
            log.warning("llama.cpp could not restore a kept prompt state; decoding the prompt")
            self._drop(key)
            llm._ctx.kv_cache_seq_rm(0, 0, -1)
            llm.n_tokens = 0
            return False
        llm.input_ids[:len(key)] = key
        llm.n_tokens = len(key)
        return True


class GreedyGrammarSampler:
    """Greedy sampling under a grammar, as llama.cpp's own common sampler does it: the
    most likely token is checked against the grammar alone, and only when the grammar
    refuses it is the grammar applied to the whole vocabulary.  llama-cpp-python's chain
    applies the grammar to every token of the vocabulary at every step (151,936 for
    Qwen2.5: a third of a JSON answer's time on this CPU).  The token chosen is the
    chain's (the first of the highest logits the grammar allows); the chain's neutral
    penalties are left out, as llama.cpp skips them."""

    def __init__(self, llm: Any, grammar: Any) -> None:
        import llama_cpp
        from llama_cpp import _internals
        self._lib = llama_cpp
        self._chain = _internals.LlamaSampler()      # the grammar alone; accepts each token
        self._chain.add_grammar(llm._model, grammar)
        self._grammar = llama_cpp.llama_sampler_chain_get(self._chain.sampler, 0)
        self._n_vocab = llm.n_vocab()
        self._one = (llama_cpp.llama_token_data * 1)()
        self._all: Any = None
        self.full_passes = self.tokens = 0

    def _apply(self, data: Any, size: int) -> None:
        lib = self._lib
        arr = lib.llama_token_data_array(data=data, size=size, selected=-1, sorted=False)
        lib.llama_sampler_apply(self._grammar, ctypes.byref(arr))

    def sample(self, ctx: Any, idx: int = -1) -> int:
        import numpy as np
        lib = self._lib
        logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        token = int(np.argmax(logits))
        self._one[0].id, self._one[0].logit, self._one[0].p = token, float(logits[token]), 0.0
        self._apply(self._one, 1)
        self.tokens += 1
        if not np.isfinite(self._one[0].logit):       # refused: the grammar on the whole vocabulary
            self.full_passes += 1
            if self._all is None:
                self._all = (lib.llama_token_data * self._n_vocab)()
                self._all_np = np.ctypeslib.as_array(self._all)
            view = self._all_np
            view["id"] = np.arange(self._n_vocab, dtype=view["id"].dtype)
            view["logit"] = logits
            view["p"] = 0.0
            self._apply(self._all, self._n_vocab)
            token = int(np.argmax(view["logit"]))
            if not np.isfinite(view["logit"][token]):
                raise RuntimeError("the grammar allows no token here")
        lib.llama_sampler_accept(self._chain.sampler, token)
        return token

    def accept(self, token: int) -> None:
        self._lib.llama_sampler_accept(self._chain.sampler, token)

    def reset(self) -> None:
        self._lib.llama_sampler_reset(self._chain.sampler)

    def close(self) -> None:
        self._chain.close()


_LLAMA_CLASS: Any = None


def _llama_class() -> Any:
    global _LLAMA_CLASS
    if _LLAMA_CLASS is not None:
        return _LLAMA_CLASS
    from llama_cpp import Llama

    class BatosLlama(Llama):
        """``Llama`` whose prompts are decoded in one canonical layout, whatever the
        context held before, so that a greedy answer depends only on its prompt.

        llama.cpp's CPU kernels round differently with the shape of a batch (a token
        in a group of four columns or alone, a batch of fewer than 8 tokens or more),
        so llama-cpp-python's reuse of the previous call's prefix, which resumes at any
        token, can change a greedy answer.  Here a prompt is resumed only at a multiple
        of ALIGN tokens, from KV that was itself decoded that way, with at least
        MIN_BATCH tokens left to decode, in chunks that end on multiples of n_batch as
        in a fresh decode: the KV and the logits are then bitwise those of a fresh
        decode (checked on the portable AVX2 build, Q4_K_M and Q4_1 weights, 1 and 2
        threads; GPU kernels were not checked: there the rule costs a few tokens and
        may not be enough).  Also: kept prefix states (``PrefixStates``), and when a draft model is
        set (speculative decoding), logits for every token of a verification batch but
        not of the prompt (llama-cpp-python's way, ``logits_all``, asks them for every
        prompt token and an n_ctx x n_vocab score matrix)."""

        reuse = True                # False: llama-cpp-python's own prefix reuse (recurrent models)
        prefix_states: PrefixStates | None = None
        canonical = 0               # leading positions of the context with a canonical KV
        last_prompt: dict = {}      # the last prompt's tokens, of them reused and restored
        _prompt_eval = False        # the next eval() is a prompt's: chunked on n_batch multiples

        def _init_sampler(self, *args, **kwargs):
            params = dict(zip(("top_k", "top_p", "min_p", "typical_p", "temp", "repeat_penalty",
                               "frequency_penalty", "presence_penalty"), args), **kwargs)
            grammar = params.get("grammar")
            if grammar is not None and params.get("temp", 0.8) == 0.0 and not params.get("logits_processor") \
                    and params.get("repeat_penalty", 1.0) == 1.0 and not params.get("frequency_penalty") \
                    and not params.get("presence_penalty") and not params.get("mirostat_mode"):
                return GreedyGrammarSampler(self, grammar)
            return super()._init_sampler(*args, **kwargs)

        def generate(self, tokens, *args, **kwargs):
            tokens = list(tokens)
            if not kwargs.get("reset", True):
                pass
            elif self.reuse:
                self._place(tokens)
            else:   # llama-cpp-python's own match: the previous context's prefix, at any token
                shared = _common_prefix(self.input_ids[:self.n_tokens].tolist(), tokens)
                self.last_prompt = {"prompt_tokens": len(tokens), "restored_tokens": 0,
                                    "reused_tokens": min(shared, max(0, len(tokens) - 1))}
            return super().generate(tokens, *args, **kwargs)

        def _place(self, tokens: list[int]) -> None:
            """Choose where the prompt is resumed, trim the context there."""
            canonical = min(self.canonical, self.n_tokens)
            shared = _common_prefix(self.input_ids[:canonical].tolist(), tokens)
            p = reuse_point(shared, len(tokens), self.n_batch)
            restored = -1
            if self.prefix_states is not None:
                try:
                    restored = self.prefix_states.prepare(self, tokens, canonical, p)
                except Exception as exc:     # never let the cache stop a generation
                    log.warning("llama.cpp prefix states failed (%s: %s); decoding the prompt whole",
                                type(exc).__name__, exc)
                    self.prefix_states.clear()
                    self._ctx.kv_cache_seq_rm(-1, 0, -1)
                    self.n_tokens, p, restored = 0, 0, -1
                if restored >= 0:
                    p = restored
            self.n_tokens = min(self.n_tokens, p)   # llama-cpp-python's prefix match keeps these
            self._requires_eval = True
            self.canonical = canonical_after(p, len(tokens), self.n_batch)
            self._prompt_eval = True
            self.last_prompt = {"prompt_tokens": len(tokens), "reused_tokens": p,
                                "restored_tokens": max(restored, 0)}

        def eval(self, tokens: Sequence[int]) -> None:
            draft = self.draft_model
            # a speculative verification batch (the last token and the drafts) needs the
            # logits of each of its tokens; a prompt needs only its last token's
            all_logits = draft is not None and not self._prompt_eval and \
                len(tokens) <= getattr(draft, "num_pred_tokens", 10) + 1
            aligned, self._prompt_eval = self._prompt_eval, False
            self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
            i = 0
            while i < len(tokens):
                n_past = self.n_tokens
                room = self.n_batch - n_past % self.n_batch if aligned else self.n_batch
                batch = tokens[i:i + room]
                self._batch.set_batch(batch=batch, n_past=n_past, logits_all=all_logits)
                self._ctx.decode(self._batch)
                self.input_ids[n_past:n_past + len(batch)] = batch
                self.n_tokens += len(batch)
                i += len(batch)
                self._requires_eval = False

    _LLAMA_CLASS = BatosLlama
    return BatosLlama


class LlamaBackend:
    kind = "llama.cpp"

    def __init__(self, path: Path, *, n_ctx: int, n_threads: int, seed: int, n_gpu_layers: int = -1,
                 prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES):
        """``prefix_cache_bytes``: RAM for kept prompt states (0: none; the live context
        is still reused, in the canonical layout)."""
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.seed = seed
        self.n_gpu_layers = n_gpu_layers    # the setting; resolved by gpu_layers() at load
        self._llm: Any = None
        self._lock = threading.Lock()       # a Llama is not thread-safe
        self._grammars: dict[str, Any] = {}  # {schema json -> LlamaGrammar}
        self.prefix_states = PrefixStates(prefix_cache_bytes) if prefix_cache_bytes > 0 else None
        self.load_seconds = 0.0
        # the last call's figures: prompt tokens, of them reused (from the live context
        # or a kept state) and restored (from a kept state), seconds to the first token
        self.last_stats: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._llm is not None:
            return
        # before llama_cpp is imported: importing it loads the compiled library
        lacking = build_lacks()
        if lacking:
            raise GenerationError(
                f"the installed llama-cpp-python build needs CPU features this CPU lacks "
                f"({', '.join(lacking)}): it would die by SIGILL. Run ./puter.sh setup to build the "
                "one for this CPU")
        try:
            llama_class = _llama_class()
        except ImportError as exc:
            raise GenerationError("llama-cpp-python is not installed; run ./puter.sh setup") from exc
        t0 = time.monotonic()
        try:
            llm = llama_class(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                              n_threads_batch=self.n_threads,
                              n_gpu_layers=gpu_layers(self.n_gpu_layers), seed=self.seed,
                              verbose=False)
        except Exception as exc:
            raise GenerationError(f"llama.cpp could not load {self.path}: {exc}") from exc
        if getattr(llm, "_is_recurrent", True) or getattr(llm, "_is_hybrid", True):
            llm.reuse = False     # recurrent memory cannot be trimmed: llama-cpp-python's way
        elif self.prefix_states is not None:
            self.prefix_states.clear()
            llm.prefix_states = self.prefix_states
        self._llm = llm
        self.load_seconds = time.monotonic() - t0

    def unload(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
            self._grammars.clear()
            if self.prefix_states is not None:
                self.prefix_states.clear()
        if llm is not None:
            llm.close()

    def reset_context(self) -> None:
        """Forget the live context and the kept states: the next prompt is decoded whole."""
        with self._lock:
            if self.prefix_states is not None:
                self.prefix_states.clear()
            if self._llm is not None:
                self._llm.canonical = 0
                self._llm.reset()

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
             seed: int | None = None, stop: list[str] | None = None,
             stop_after_code: bool = False) -> Generation:
        """One chat completion; streamed, so that ``cancel`` can stop it between tokens.
        ``seed`` (default: the backend's) varies sampled answers.

        ``stop``: strings that end the answer (not included in it), as llama.cpp's stop.
        ``stop_after_code``: end the answer as soon as its first fenced code block is
        closed (the closing fence kept; finish_reason "stop").
        """
        with self._lock:
            self._load_locked()
            llm = self._llm
            kwargs: dict[str, Any] = {}
            if schema is not None:
                kwargs["grammar"] = self._grammar(schema)
            if stop:
                kwargs["stop"] = list(stop)
            return self._stream(lambda: llm.create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=temperature,
                seed=self.seed if seed is None else seed, stream=True, **kwargs),
                lambda choice: (choice.get("delta") or {}).get("content"), cancel, stop_after_code)

    def complete_text(self, prompt: str, *, max_tokens: int, temperature: float,
                      cancel: threading.Event | None = None, seed: int | None = None,
                      stop: list[str] | None = None) -> Generation:
        """Plain text completion of ``prompt`` (no chat template): the model continues the
        text, as a code model continues a file; ``stop`` strings end it (not included)."""
        with self._lock:
            self._load_locked()
            llm = self._llm
            return self._stream(lambda: llm.create_completion(
                prompt, max_tokens=max_tokens, temperature=temperature,
                seed=self.seed if seed is None else seed, stream=True, stop=list(stop or []) or None),
                lambda choice: choice.get("text"), cancel, False)

    def _stream(self, start: Any, text_of: Any, cancel: threading.Event | None,
                stop_after_code: bool) -> Generation:
        """Run one streamed generation (the lock held): its text, counts and time."""
        llm = self._llm
        t0 = time.monotonic()
        first = None
        pieces: list[str] = []
        n_chunks, finish = 0, ""
        llm.last_prompt = {}
        try:
            stream = start()
            for chunk in stream:
                choice = chunk["choices"][0]
                text = text_of(choice)
                if text:
                    if first is None:
                        first = time.monotonic() - t0
                    pieces.append(text)
                    n_chunks += 1
                finish = choice.get("finish_reason") or finish
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if stop_after_code and text and "`" in text and code_block_closed("".join(pieces)):
                    finish = "stop"
                    break
            close = getattr(stream, "close", None)
            if close is not None:
                close()         # ends llama-cpp-python's generator here, under the lock
        except Exception as exc:
            raise GenerationError(f"llama.cpp failed to generate: {type(exc).__name__}: {exc}") from exc
        seconds = time.monotonic() - t0
        prompt_tokens = llm.last_prompt.get("prompt_tokens") or max(
            0, int(getattr(llm, "n_tokens", 0)) - n_chunks)
        self.last_stats = {**llm.last_prompt, "first_token_s": first}
        return Generation(text="".join(pieces), prompt_tokens=prompt_tokens,
                          completion_tokens=n_chunks, seconds=seconds, finish_reason=finish,
                          model=self.path.name)
