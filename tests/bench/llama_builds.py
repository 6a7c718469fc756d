"""``./puter.sh bench --builds``: the llama.cpp builds side by side, in one run.

The installed (chosen) build and the other named one (portable beside avx512), each installed by
``tools/llama_wheel.py`` (the alternative into ``.venv/llama-builds/NAME`` and put
first on ``PYTHONPATH``), measured in turns (A B A B ...) so that the machine's
drift falls on both:

    prompt / generation  tokens per second of the embedded Qwen GGUF (a 600-token
                         prompt, 128 generated tokens), llama.cpp alone
    cycle                a cognitive cycle on a real kernel (the model already loaded)
    translation          the client's translator, warm, over the evaluation utterances

A build that dies by a signal is reported as such (that is what the alternative
does on a CPU without AVX-512), not measured.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = ROOT / ".venv" / "llama-builds"
PROMPT = ("You are BRICK, the deconstruction engine of BAT OS. " * 60).strip()


def probe() -> dict:
    """One build's figures, in this process (PYTHONPATH picks the build)."""
    import llama_cpp

    from batos.llm.embedded import embedded_gguf
    from client.translator import Translator
    from config import load
    from tests.bench.__main__ import pct
    from tests.conftest import KernelProcess
    from tests.test_client import judge
    from tests.translation_eval import CASES, METHODS
    settings = load()
    path = embedded_gguf(settings.MODEL_CACHE_DIR)
    out: dict = {"llama_cpp": str(Path(llama_cpp.__file__).parent)}
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=2048, n_threads=os.cpu_count() or 1,
                          n_gpu_layers=0, seed=0, verbose=False)
    llm("warm up", max_tokens=4)
    llm.reset()
    tokens = llm.tokenize(PROMPT.encode())[:600]
    t0 = time.perf_counter()
    llm.eval(tokens)
    out["prompt_tok_per_s"] = len(tokens) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = 0
    for _ in llm.generate(tokens[-8:], temp=0.0, reset=True):
        n += 1
        if n >= 128:
            break
    out["gen_tok_per_s"] = n / (time.perf_counter() - t0)   # includes re-reading 8 tokens
    llm.close()
    t = Translator(path, n_gpu_layers=0)
    t.load()
    t.translate("warm up the prompt prefix", "genesis_obj", METHODS)
    times, correct = [], 0
    for utterance, kind, selector, args in CASES[::2]:    # every other utterance: 13 of 26
        t0 = time.perf_counter()
        command = t.translate(utterance, "genesis_obj", METHODS)
        times.append(time.perf_counter() - t0)
        correct += judge(command, kind, selector, args)
    out.update(translate_p50_s=pct(times, 0.5), translate_accuracy=correct / len(times))
    del t
    with tempfile.TemporaryDirectory(prefix="batos-bench-build-") as tmp:
        k = KernelProcess(Path(tmp) / "home").start(wait_s=60)
        try:
            with k.connect(timeout_s=900) as c:
                times = []
                for selector, arg, expect in (("to_upper", "hello", "HELLO"),
                                              ("reverse_text", "abc", "cba")):
                    t0 = time.perf_counter()
                    reply = c.request({"command": "send_message", "target_oid": "genesis_obj",
                                       "selector": selector, "args": [arg]})
                    times.append(time.perf_counter() - t0)
                    out.setdefault("cycle_correct", []).append(
                        bool(reply.get("ok")) and reply["result"]["value"] == expect)
            # the first cycle loads the model: the warm ones are the figure
            out["cycle_cold_s"], out["cycle_warm_s"] = times[0], times[1]
        finally:
            k.stop()
    return out


def install(name: str) -> Path:
    target = BUILD_DIR / name
    subprocess.run([sys.executable, str(ROOT / "tools" / "llama_wheel.py"), "install", "--build", name,
                    "--target", str(target)], check=True)
    return target


def run_probe(target: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    env["HF_HUB_OFFLINE"] = "1"
    if target is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(target), str(ROOT)])
    proc = subprocess.run([sys.executable, "-m", "tests.bench.llama_builds", "--probe"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        why = f"died by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"error": f"{why}: {proc.stderr.strip().splitlines()[-1:] or ''}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(alternative: str | None = None, rounds: int = 2) -> dict:
    """The installed build and ``alternative`` (by default the other named one) in turns;
    medians per figure."""
    sys.path.insert(0, str(ROOT / "tools"))
    import llama_wheel
    chosen = llama_wheel.installed_marker(None).get("build", "installed")
    if alternative is None:
        alternative = "portable" if chosen == "avx512" else "avx512"
    alt_target = install(alternative)
    runs: dict[str, list[dict]] = {chosen: [], alternative: []}
    for _ in range(rounds):
        runs[chosen].append(run_probe(None))
        runs[alternative].append(run_probe(alt_target))
    out = {}
    for name, results in runs.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            out[name] = {"error": results[0]["error"]}
            continue
        out[name] = {key: statistics.median(r[key] for r in ok)
                     for key in ("prompt_tok_per_s", "gen_tok_per_s", "translate_p50_s",
                                 "translate_accuracy", "cycle_warm_s", "cycle_cold_s")}
        out[name]["cycles_correct"] = sum(sum(r["cycle_correct"]) for r in ok)
        out[name]["cycles"] = sum(len(r["cycle_correct"]) for r in ok)
        out[name]["runs"] = len(ok)
    return {"chosen": chosen, "alternative": alternative, "builds": out}


def report(result: dict) -> None:
    print("llama.cpp builds, side by side (medians of the runs, taken in turns)")
    for name, r in result["builds"].items():
        tag = "chosen" if name == result["chosen"] else "alternative"
        if "error" in r:
            print(f"  {name:<9} ({tag}) could not run: {r['error']}")
            continue
        print(f"  {name:<9} ({tag}) prompt {r['prompt_tok_per_s']:.0f} tok/s   generation "
              f"{r['gen_tok_per_s']:.1f} tok/s   cycle warm {r['cycle_warm_s']:.1f} s (cold "
              f"{r['cycle_cold_s']:.1f} s; {r['cycles_correct']}/{r['cycles']} correct)   translation "
              f"p50 {r['translate_p50_s']:.2f} s (accuracy {r['translate_accuracy']:.2f})")


if __name__ == "__main__":
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
    else:
        result = compare()
        report(result)
        print(json.dumps(result))
