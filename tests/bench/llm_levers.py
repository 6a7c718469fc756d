"""The generation levers of ``batos/llm/llama.py``, each measured against its absence in
one run (the arms in turns, the order rotated each repetition; medians):

    prefix   a cycle-like sequence (BRICK's plan, then ALFRED's method, a new mission
             each time) on A: llama-cpp-python's reuse of the previous call's prefix
             (the backend before these levers), B: ``LlamaBackend``'s aligned reuse and
             kept prefix states, C: a fresh decode of every prompt (the reference)
    stop     ``chat(stop_after_code=True)`` on method answers: the answer ends at the
             closing fence (A: at the model's end-of-turn token)
    lookup   prompt-lookup decoding (llama-cpp-python's draft model; measured, not kept)
             on repair turns (the previous method and the Guardian's findings in the
             prompt) and on first method prompts (A: plain decoding)
    threads  (on request) 1 thread against one per core, a fresh prompt each time

Each row: prompt tokens decoded (the prompt less what was reused or restored), ms to
the first token (prompt evaluation), generated tokens, total seconds (sums over the
repetition's calls), the ratio to A, and whether the answers are identical where they
must be (greedy decoding).  The prompts are the kernel's own (``batos.genesis``
templates, the Persona Codex's system prompts).

    python -m tests.bench.llm_levers [--model embedded|smollm2|PATH] [--reps 2]
           [--levers prefix,stop,lookup,threads] [--threads N] [--lookup 10] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from batos import codex, guardian
from batos.genesis import (DECOMPOSING_INSTRUCTIONS, PURE_RULE, STATEFUL_RULE,
                           SYNTHESIZING_INSTRUCTIONS)
from batos.llm.base import code_block_closed
from batos.llm.llama import LlamaBackend
from batos.psm import PLAN_SCHEMA, plan_asks

# (selector, argument names, the Architect's words)
MISSIONS = [
    ("to_upper", ["text"], "return the text in upper case"),
    ("word_count", ["text"], "count the words in a text (separated by whitespace)"),
    ("count_vowels", ["text"], "count the vowels a, e, i, o, u in the text, ignoring case"),
    ("factorial", ["n"], "return n factorial for a non-negative integer n"),
    ("add_to_total", ["amount"],
     "add the amount to this object's running total (which starts at 0) and return the new total"),
    ("is_palindrome", ["text"], "tell whether the text reads the same backwards (exact characters)"),
]

# repair turns: (mission index, the previous answer, the Guardian's findings)
REPAIRS = [
    (4, '```python\ndef add_to_total(self, amount):\n    """Add the amount to the running total '
        'and return the new total."""\n    if not hasattr(self, "total"):\n        self.total = 0\n'
        '    self.total += amount\n    return self.total\n```',
     ["Persistence Covenant: the method changes its object's state (line 4) but does not end "
      "with 'self._p_changed = True'"]),
    (3, '```python\ndef factorial(self, n):\n    """Return n factorial for a non-negative integer n."""\n'
        '    if n < 0:\n        raise ValueError("n must be a non-negative integer")\n    result = 1\n'
        '    for i in range(2, n + 1):\n        result *= i\n    print(result)\n    return result\n```',
     ["line 8: 'print' is not allowed in a method"]),
    (1, '```python\ndef word_count(self, text):\n    """Count the words in a text."""\n'
        '    self._p_changed = True\n    words = text.split()\n    self.last_count = len(words)\n'
        '    return len(words)\n```',
     ["line 6: Persistence Covenant: this return can follow a state change; "
      "put 'self._p_changed = True' right before it"]),
]


def fields(selector: str, args: list[str], intent: str) -> dict:
    return {"target": "genesis_obj", "selector": selector,
            "example_call": f"{selector}({', '.join(args)})",
            "intent_line": f"The Architect's words: {intent}\n",
            "methods": "add(self, a, b), greet(self, name)", "slots": "name (str)",
            "params_hint": f"{len(args)} positional argument(s)",
            "allowed": ", ".join(sorted(guardian.ALLOWED_MODULES)),
            "context": "(none)", "skills": "(none)", "examples_line": "",
            "knowledge_block": "", "skills_block": "", "plan_asks": plan_asks(True, True),
            "state_rule": STATEFUL_RULE if "total" in selector else PURE_RULE}


def plan_messages(mission) -> list[dict]:
    return [{"role": "system", "content": codex.system_prompt("BRICK")},
            {"role": "user", "content": DECOMPOSING_INSTRUCTIONS.format(**fields(*mission))}]


def code_messages(mission) -> list[dict]:
    return [{"role": "system", "content": codex.system_prompt("ALFRED")},
            {"role": "user", "content": SYNTHESIZING_INSTRUCTIONS.format(**fields(*mission))}]


def repair_messages(repair) -> list[dict]:
    index, answer, findings = repair
    selector = MISSIONS[index][0]
    return code_messages(MISSIONS[index]) + [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "The PersistenceGuardian refused that method:\n- " + "\n- ".join(findings)
         + f"\nWrite the corrected method '{selector}'. Answer with only the code in one ```python block."}]


class Arm:
    """One side of a comparison: its calls, and per repetition the sums over them."""

    def __init__(self, name: str, calls, before=None):
        self.name = name
        self.calls = calls          # rep -> [(backend, messages, chat kwargs)]
        self.before = before        # called before each chat (the fresh-decode arm resets)
        self.reps: list[dict] = []
        self.texts: list[list[str]] = []

    def run(self, rep: int) -> None:
        sums = {"prompt_decoded": 0, "prompt_s": 0.0, "gen_tokens": 0, "total_s": 0.0}
        texts = []
        for backend, messages, kwargs in self.calls(rep):
            if self.before is not None:
                self.before(backend)
            gen = backend.chat(messages, temperature=0.0, **kwargs)
            st = backend.last_stats
            sums["prompt_decoded"] += st.get("prompt_tokens", 0) - st.get("reused_tokens", 0)
            sums["prompt_s"] += st.get("first_token_s") or gen.seconds
            sums["gen_tokens"] += gen.completion_tokens
            sums["total_s"] += gen.seconds
            texts.append(gen.text)
        self.reps.append(sums)
        self.texts.append(texts)

    def median(self, key: str) -> float:
        return statistics.median(r[key] for r in self.reps)


def alternate(arms: list[Arm], reps: int) -> None:
    """A B (C) in turns, the order rotated each repetition."""
    for rep in range(reps):
        for k in range(len(arms)):
            arm = arms[(rep + k) % len(arms)]
            arm.run(rep)
            sums = {key: round(v, 3) for key, v in arm.reps[-1].items()}
            print(f"  rep {rep + 1} {arm.name}: {json.dumps(sums)}", flush=True)


def same_texts(a: Arm, b: Arm, same=lambda x, y: x == y) -> tuple[bool, list]:
    diffs = [(x, y) for ra, rb in zip(a.texts, b.texts) for x, y in zip(ra, rb) if not same(x, y)]
    return not diffs, diffs


def row(lever: str, arms: list[Arm], identical: dict) -> dict:
    """``identical``: {label -> (bool, differences)}."""
    out = {"lever": lever, "reps": len(arms[0].reps),
           "arms": {arm.name: {k: round(arm.median(k), 3) for k in arm.reps[0]} for arm in arms},
           "identical": {label: ok for label, (ok, _) in identical.items()}}
    diffs = {label: d[:2] for label, (ok, d) in identical.items() if d}
    if diffs:
        out["differences"] = diffs
    return out


def _backend(path: Path, args, **kw) -> LlamaBackend:
    return LlamaBackend(path, n_ctx=4096, n_threads=args.threads, seed=0, n_gpu_layers=0, **kw)


def bench_prefix(path: Path, args) -> list[dict]:
    """A cycle-like sequence, plan then method, a new mission for each pair; each arm
    keeps its own long-lived Llama through the repetitions (as the kernel does):
    A the llama-cpp-python reuse of the previous call's prefix (the backend before these
    levers), B the aligned reuse with kept states, C a fresh decode of every prompt
    (the reference: a greedy answer must not depend on what the context held)."""
    old = _backend(path, args, prefix_cache_bytes=0)
    old.load()
    old._llm.reuse = False        # llama-cpp-python's own prefix match, at any token
    new = _backend(path, args)
    fresh = _backend(path, args, prefix_cache_bytes=0)
    n = args.missions

    def calls(backend):
        def make(rep):
            out = []
            for i in range(n):
                m = MISSIONS[(rep * n + i) % len(MISSIONS)]
                plan = {"max_tokens": args.plan_tokens, "schema": PLAN_SCHEMA}
                out.append((backend, plan_messages(m), plan))
                out.append((backend, code_messages(m), {"max_tokens": args.code_tokens}))
            return out
        return make

    a = Arm("A: previous call's prefix", calls(old))
    b = Arm("B: aligned + kept states", calls(new))
    c = Arm("C: fresh decode", calls(fresh), before=lambda backend: backend.reset_context())
    alternate([a, b, c], args.reps)
    r = row(f"prefix ({2 * n} calls: plan, method..)", [a, b, c],
            {"B=C": same_texts(b, c), "A=C": same_texts(a, c)})
    ps = new.prefix_states
    r["states"] = {"kept": len(ps), "MiB": round(ps.bytes / 2**20, 1), "saves": ps.saves,
                   "restores": ps.restores, "save+restore_s": round(ps.seconds, 3)}
    for backend in (old, new, fresh):
        backend.unload()
    return [r]


def _cut_at_fence(full: str, cut: str) -> bool:
    """``cut`` is ``full`` ended at its first closed code block (or all of it)."""
    return cut == full or (full.startswith(cut) and code_block_closed(cut)
                           and not code_block_closed(cut[:-1]))


def bench_stop(path: Path, args) -> list[dict]:
    """Method answers and a repair; each prompt was decoded by the call before (so the
    figures are the generation's)."""
    backend = _backend(path, args)
    prompts = [code_messages(m) for m in MISSIONS[:args.missions]] + [repair_messages(REPAIRS[0])]

    def calls(extra):
        return lambda rep: [(backend, p, {"max_tokens": args.code_tokens, **extra}) for p in prompts]

    a = Arm("A: to the end of turn", calls({}))
    b = Arm("B: stop_after_code", calls({"stop_after_code": True}))
    alternate([a, b], args.reps)
    backend.unload()
    return [row(f"stop ({len(prompts)} method answers)", [a, b],
                {"B=A cut at the fence": same_texts(a, b, _cut_at_fence)})]


def bench_lookup(path: Path, args) -> list[dict]:
    """Prompt-lookup decoding: llama-cpp-python's ``LlamaPromptLookupDecoding`` set as
    the Llama's draft model (not a backend option: measured, not kept)."""
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
    backend = _backend(path, args)
    rows = []
    cases = [("repair", [repair_messages(r) for r in REPAIRS[:args.missions]]),
             ("first method", [code_messages(m) for m in MISSIONS[:args.missions]])]

    def draft(n):
        def before(b):
            b.load()
            b._llm.draft_model = LlamaPromptLookupDecoding(num_pred_tokens=n) if n else None
        return before

    for name, prompts in cases:
        def calls(prompts=prompts):
            return lambda rep: [(backend, p, {"max_tokens": args.code_tokens}) for p in prompts]

        a = Arm("A: plain", calls(), before=draft(0))
        b = Arm(f"B: prompt lookup, {args.lookup}", calls(), before=draft(args.lookup))
        print(f" {name}", flush=True)
        alternate([a, b], args.reps)
        rows.append(row(f"lookup, {name} ({len(prompts)})", [a, b], {"B=A": same_texts(a, b)}))
    backend.unload()
    return rows


def bench_threads(path: Path, args) -> list[dict]:
    """Not a lever of the backend but of its setting (LLM_N_THREADS): llama.cpp's threads
    wait for each other by spinning, which a busy machine punishes."""
    import os
    cores = os.cpu_count() or 1
    backends = {n: _backend(path, args) for n in sorted({cores, 1})}
    for n, backend in backends.items():
        backend.n_threads = n
    prompts = [code_messages(m) for m in MISSIONS[:1]]
    arms = [Arm(f"threads={n}", (lambda b: lambda rep: [(b, p, {"max_tokens": args.threads_tokens})
                                                       for p in prompts])(backend),
                before=lambda backend: backend.reset_context())
            for n, backend in backends.items()]
    alternate(arms, args.reps)
    for backend in backends.values():
        backend.unload()
    return [row(f"threads ({args.threads_tokens} tokens)", arms,
                {"same": same_texts(arms[0], arms[-1])})]


LEVERS = {"prefix": bench_prefix, "stop": bench_stop, "lookup": bench_lookup, "threads": bench_threads}


def table(rows: list[dict]) -> str:
    head = (f"{'lever':<32} {'arm':<28} {'prompt tok':>10} {'prompt ms':>10} {'gen tok':>8} "
            f"{'total s':>8} {'x A':>5}")
    lines = [head, "-" * len(head)]
    for r in rows:
        base = None
        for i, (name, v) in enumerate(r["arms"].items()):
            base = base or v["total_s"]
            lines.append(f"{r['lever'] if i == 0 else '':<32} {name:<28} {v['prompt_decoded']:>10.0f} "
                         f"{v['prompt_s'] * 1000:>10.0f} {v['gen_tokens']:>8.0f} {v['total_s']:>8.2f} "
                         f"{v['total_s'] / base if base else 0:>5.2f}")
        lines.append(f"{'':<32} identical: " + ", ".join(f"{k} {'yes' if ok else 'NO'}"
                                                         for k, ok in r["identical"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded", help="embedded, smollm2 or a GGUF path")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--levers", default="prefix,stop,lookup", help="of prefix, stop, lookup, threads")
    ap.add_argument("--missions", type=int, default=2, help="missions (or repairs) per repetition")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: one per core)")
    ap.add_argument("--lookup", type=int, default=10, help="prompt-lookup draft length")
    ap.add_argument("--plan-tokens", type=int, default=160)
    ap.add_argument("--code-tokens", type=int, default=512)
    ap.add_argument("--threads-tokens", type=int, default=24, help="tokens generated by the threads lever")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    if args.model == "embedded":
        import config
        from batos.llm.embedded import embedded_gguf
        path = embedded_gguf(config.load().MODEL_CACHE_DIR)
    elif args.model == "smollm2":
        from batos.llm.embedded import smollm2_gguf
        path = smollm2_gguf()
    else:
        path = Path(args.model)
    threads = args.threads or "one per core"
    print(f"model {path.name}, {args.reps} repetitions, arms alternated, threads {threads}", flush=True)
    rows = []
    t0 = time.monotonic()
    for lever in args.levers.split(","):
        print(f"[{lever}]", flush=True)
        rows += LEVERS[lever](path, args)
    print()
    print(f"model {path.name}; medians of {args.reps} repetitions; {time.monotonic() - t0:.0f} s in all")
    print(table(rows))
    for r in rows:
        extra = {k: v for k, v in r.items() if k in ("states", "differences")}
        if extra:
            print(r["lever"], json.dumps(extra))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
