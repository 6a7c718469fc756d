"""``./puter.sh bench``: the kernel's figures, measured on a real kernel process.

    start-to-ping       process start until the first ping is answered (no model loaded)
    ping                round trip of ping (p50/p99)
    send_message        round trip to an installed method (p50/p99), one request at a time:
                        client -> kernel -> sandbox worker -> kernel -> client
    jupyter             a Jupyter (ipykernel) execute round trip calling the same function,
                        measured in the same run, and send_message's p50 as a ratio of it
    sandbox             a method call that writes state (the commit included), and the time
                        to replace a worker killed for running past its deadline
    pipelined           send_message throughput with many requests in flight
    load                32 clients with 32 sends each in flight: Busy replies (target 0), wrong
                        replies, p50/p99 latency from send to reply
    cycle               a cognitive cycle with the embedded model (cold: includes model load)
    missions            tests/missions.py through real cycles: pass rate and median cycle time
    memory              Fractal Memory search at 10k and 100k chunks; query embedding time
    models              model load times (from the image's blobs) and a swap
    translation         the client's translator: warm (model loaded) and cold (a new process)
    watchdog            crash-to-serving (kill -9 until a new kernel answers ping), upgrade downtime

    builds              (--builds) the chosen llama.cpp build next to the alternative, in turns:
                        tokens/s, a warm cycle and translation under each (tests/bench/llama_builds.py)

Options: --quick skips everything that loads a model; --n N sets the number of sequential sends;
--builds measures only the llama.cpp builds.
The 10k/100k catalogs hold generated text (a Zipf-distributed vocabulary) with random unit
vectors, so that building them takes seconds rather than the hours of embedding 100k chunks;
the search code path is the one the kernel runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import KernelProcess

ADD = "def add(self, a, b):\n    return a + b\n"


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ms(v: float) -> str:
    return f"{v * 1000:.3f} ms"


def bench_round_trips(conn, n: int) -> dict:
    out = {}
    for _ in range(200):  # warm up
        conn.call("send_message", target_oid="genesis_obj", selector="add", args=[1, 2])
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        conn.call("ping")
        times.append(time.perf_counter() - t0)
    out["ping_p50_s"], out["ping_p99_s"] = pct(times, 0.5), pct(times, 0.99)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        r = conn.call("send_message", target_oid="genesis_obj", selector="add", args=[i, 1])
        times.append(time.perf_counter() - t0)
        assert r["value"] == i + 1
    out["send_p50_s"], out["send_p99_s"] = pct(times, 0.5), pct(times, 0.99)
    out["send_mean_s"] = statistics.fmean(times)
    total, window = 5000, 64
    t0 = time.perf_counter()
    pending = []
    sent = done = 0
    while done < total:
        while sent < total and len(pending) < window:
            pending.append(conn.send({"command": "send_message", "target_oid": "genesis_obj",
                                      "selector": "add", "args": [sent, 1], "stream": False}))
            sent += 1
        reply = conn.wait(pending.pop(0), 30)
        assert reply["ok"], reply
        done += 1
    out["pipelined_per_s"] = total / (time.perf_counter() - t0)
    return out


def bench_load(k: KernelProcess, clients: int = 32, window: int = 32, per_client: int = 128) -> dict:
    """``clients`` connections, each keeping ``window`` sends in flight to ``add``: every
    reply checked, Busy counted, latency per request (send to reply)."""
    import threading
    lat: list[float] = []
    busy = wrong = 0
    lock = threading.Lock()

    def client(n: int) -> None:
        nonlocal busy, wrong
        with k.connect(timeout_s=120) as c:
            pending: dict = {}
            sent = 0
            while sent < per_client or pending:
                while sent < per_client and len(pending) < window:
                    rid = c.send({"command": "send_message", "target_oid": "genesis_obj",
                                  "selector": "add", "args": [n, sent], "stream": False})
                    pending[rid] = (time.perf_counter(), n + sent)
                    sent += 1
                rid = next(iter(pending))
                reply = c.wait(rid, 120)
                t0, want = pending.pop(rid)
                with lock:
                    lat.append(time.perf_counter() - t0)
                    if not reply["ok"]:
                        busy += reply["error"]["type"] == "Busy"
                        wrong += reply["error"]["type"] != "Busy"
                    elif reply["result"]["value"] != want:
                        wrong += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    return {"load_requests": len(lat), "load_busy": busy, "load_wrong": wrong,
            "load_p50_s": pct(lat, 0.5), "load_p99_s": pct(lat, 0.99), "load_per_s": len(lat) / wall,
            "load_clients": clients, "load_window": window}


def bench_jupyter(n: int) -> dict:
    """An ipykernel's execute round trip: execute_request until its execute_reply."""
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        kc.execute_interactive("def add(a, b):\n    return a + b\n", timeout=30)
        times = []
        for i in range(200 + n):
            t0 = time.perf_counter()
            msg_id = kc.execute(f"add({i}, 1)", store_history=False)
            while kc.get_shell_msg(timeout=10)["parent_header"].get("msg_id") != msg_id:
                pass
            if i >= 200:     # after a warm-up
                times.append(time.perf_counter() - t0)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return {"jupyter_execute_p50_s": pct(times, 0.5), "jupyter_execute_p99_s": pct(times, 0.99)}


def bench_sandbox(conn, n: int) -> dict:
    """A call that writes state (so the commit is in it), and a runaway worker's replacement."""
    bump = "def bump(self):\n    self.hits = self.hits + 1 if hasattr(self, 'hits') else 1\n" \
           "    self._p_changed = True\n    return self.hits\n"
    conn.call("install_method", target_oid="genesis_obj", selector="bump", source=bump)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.call("send_message", target_oid="genesis_obj", selector="bump")
        times.append(time.perf_counter() - t0)
    spin = "def spin(self):\n    while True:\n        pass\n"
    conn.call("install_method", target_oid="genesis_obj", selector="spin", source=spin)
    t0 = time.perf_counter()
    try:
        conn.call("send_message", target_oid="genesis_obj", selector="spin", timeout_s=30)
    except Exception:
        pass
    timed_out = time.perf_counter() - t0
    t0 = time.perf_counter()
    conn.call("send_message", target_oid="genesis_obj", selector="add", args=[1, 2])
    return {"send_write_p50_s": pct(times, 0.5), "send_write_p99_s": pct(times, 0.99),
            "runaway_answer_s": timed_out, "after_runaway_s": time.perf_counter() - t0}


def bench_cycle(k: KernelProcess) -> dict:
    out = {}
    with k.connect(timeout_s=900) as c:
        for label, selector, arg, expect in (("cold", "to_upper", "hello", "HELLO"),
                                             ("warm", "reverse_text", "abc", "cba")):
            t0 = time.perf_counter()
            r = c.call("send_message", target_oid="genesis_obj", selector=selector, args=[arg])
            out[f"cycle_{label}_s"] = time.perf_counter() - t0
            out[f"cycle_{label}_correct"] = r["value"] == expect
    ends = [e for e in k.wait_events(lambda ev: sum(e.get("event") == "cycle_end" for e in ev) >= 2)
            if e.get("event") == "cycle_end"]
    out["cycle_states"] = [e["state"] for e in ends]
    return out


def bench_missions(k: KernelProcess) -> dict:
    from tests.missions import run_missions, summary
    k.wait_events(lambda ev: any(e["event"] == "codex_ingested" for e in ev), 120)
    with k.connect(timeout_s=900) as c:
        records = run_missions(c)
    out = summary(records)
    out["failed"] = [r["selector"] for r in records if not r["passed"]]
    return {f"missions_{key}": v for key, v in out.items()}


def bench_missions_hard(only: list[str] | None = None, keep: str | None = None,
                        settings: dict | None = None) -> dict:
    """tests/missions_hard.py through real cycles on a fresh image (memory and codex on).
    ``only``: just these selectors (and the missions their siblings need); ``keep``: run
    in this directory and leave it (its metacognition.jsonl says why each cycle went as it did);
    ``settings``: BATOS_* settings for the kernel (a lever measured against the defaults)."""
    from tests.missions_hard import MISSIONS, needed, run_missions, summary
    missions = needed(only) if only else MISSIONS
    with tempfile.TemporaryDirectory(prefix="batos-bench-hard-") as tmp:
        home = Path(keep) if keep else Path(tmp) / "home"
        if keep and home.exists() and any(home.iterdir()):
            raise SystemExit(f"--keep {keep}: the directory is not empty")
        k = KernelProcess(home, {"BATOS_MEMORY_ENABLED": "1", **(settings or {})})
        k.start(wait_s=60)
        try:
            k.wait_events(lambda ev: any(e["event"] == "codex_ingested" for e in ev), 180)
            with k.connect(timeout_s=900) as c:
                records = run_missions(c, missions=missions)
        finally:
            k.stop()
    out = summary(records)
    print(f"harder missions: {out['passed']}/{out['missions']} passed, median cycle "
          f"{out['median_cycle_s']:.1f} s")
    for r in records:
        mark = "ok  " if r["passed"] else "FAIL"
        why = "" if r["passed"] else f"  {r['phase'] or ''} {(r['reason'] or '; '.join(r['failures']))[:160]}"
        print(f"  {mark} {r['selector']:<22} {r['seconds']:6.1f} s{why}")
    out["failed"] = [r["selector"] for r in records if not r["passed"]]
    return {f"missions_hard_{key}": v for key, v in out.items()}


def bench_memory() -> dict:
    import numpy as np

    import config
    from batos.memory import FractalMemory, KnowledgeCatalog
    memory = FractalMemory(config.load({}))
    out = {}
    queries = [f"how do I {w} a list of numbers" for w in ("sort", "sum", "filter", "reverse")] * 10
    memory.embedder.encode(["warm up"])
    times = []
    for q in queries:
        t0 = time.perf_counter()
        memory.embedder.encode([q])
        times.append(time.perf_counter() - t0)
    out["embed_query_p50_s"] = pct(times, 0.5)
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(20000)])
    p = 1.0 / np.arange(1, 20001)
    p /= p.sum()
    for n in (10_000, 100_000):
        vecs = rng.standard_normal((n, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        texts = [" ".join(vocab[rng.choice(20000, 40, p=p)]) for _ in range(n)]
        catalog = KnowledgeCatalog()
        t0 = time.perf_counter()
        for i in range(0, n, 5000):
            catalog.add(texts[i:i + 5000], vecs[i:i + 5000], f"s{i}")
        out[f"memory_{n}_build_s"] = time.perf_counter() - t0
        memory.vectors = type(memory.vectors)(memory.settings.MEMORY_IVF_THRESHOLD)
        t0 = time.perf_counter()
        memory.vectors.sync(catalog)
        out[f"memory_{n}_index_s"] = time.perf_counter() - t0
        root = {"memory": catalog}
        times, top1 = [], 0
        for i in range(300):
            q = vecs[i] + 0.05 * rng.standard_normal(384).astype(np.float32)
            q /= np.linalg.norm(q)
            t0 = time.perf_counter()
            hits = memory.search(root, " ".join(texts[i].split()[:6]), 5, query_vector=q)
            times.append(time.perf_counter() - t0)
            top1 += hits[0]["id"] == i + 1
        out[f"memory_{n}_search_p50_s"], out[f"memory_{n}_search_p99_s"] = pct(times, 0.5), pct(times, 0.99)
        out[f"memory_{n}_top1"] = top1 / 300
    return out


def bench_translation(k: KernelProcess) -> dict:
    import os
    import subprocess

    from client.translator import Translator, find_parser_model
    from tests.conftest import ROOT
    from tests.test_client import judge
    from tests.translation_eval import CASES, METHODS
    t = Translator(find_parser_model())
    t0 = time.perf_counter()
    t.load()
    out = {"translator_load_s": time.perf_counter() - t0}
    t.translate("warm up the prompt prefix", "genesis_obj", METHODS)
    times, correct = [], 0
    for utterance, kind, selector, args in CASES:
        t0 = time.perf_counter()
        command = t.translate(utterance, "genesis_obj", METHODS)
        times.append(time.perf_counter() - t0)
        correct += judge(command, kind, selector, args)
    out.update(translate_warm_p50_s=pct(times, 0.5), translate_warm_p90_s=pct(times, 0.9),
               translate_accuracy=correct / len(CASES), translate_cases=len(CASES))
    env = {**os.environ, "BATOS_ZMQ_ENDPOINT": k.endpoint, "BATOS_HOME": str(k.home)}
    cold = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "client", "--translate", "what is the factorial of 6?"],
                       cwd=ROOT, env=env, capture_output=True, check=True, timeout=300)
        cold.append(time.perf_counter() - t0)
    out["translate_cold_p50_s"] = pct(cold, 0.5)
    return out


def bench_watchdog(tmp: str) -> dict:
    import os
    import signal

    from tests.test_watchdog import Watchdog, wait_report, write_instructions
    # the default kernel (memory on); each crash comes after a stable run (no crash-loop backoff)
    dog = Watchdog(Path(tmp) / "watchdog", {"BATOS_MEMORY_ENABLED": "1", "BATOS_WATCHDOG_STABLE_S": "1"})
    out: dict = {}
    try:
        pid = dog.ping()["pid"]
        times = []
        for _ in range(5):
            time.sleep(1.5)
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            pid = dog.ping(not_pid=pid)["pid"]
            times.append(time.perf_counter() - t0)
        out["crash_to_serving_p50_s"], out["crash_to_serving_max_s"] = pct(times, 0.5), max(times)
        t0 = time.perf_counter()
        write_instructions(dog.home, {"id": "bench", "steps": [["python", "-c", "print('step')"]]})
        dog.ping(not_pid=pid, wait_s=120)
        out["upgrade_end_to_end_s"] = time.perf_counter() - t0
        out["upgrade_downtime_s"] = wait_report(dog.home, "applied")["downtime_s"]
    finally:
        dog.stop()
    return out


def bench_models(tmp: str) -> dict:
    import config
    from batos import genesis
    from batos.image import Image
    from batos.llm import Models
    settings = config.load({"BATOS_HOME": str(Path(tmp) / "models-home"),
                            "BATOS_PERSONA_MODELS": '{"ALFRED": "embedded", "BRICK": "smollm2"}',
                            "BATOS_MODEL_MEMORY_BUDGET_MB": "1100"})
    image = Image.open(settings)
    image.bootstrap(genesis.incarnate)
    events: list[dict] = []
    out = {}
    try:
        models = Models(settings, image, emit=events.append)
        for source in ("embedded", "smollm2"):
            t0 = time.perf_counter()
            models.resolve(source)
            out[f"store_{source}_s"] = time.perf_counter() - t0
        msgs = [{"role": "user", "content": "Say hi."}]
        for persona in ("ALFRED", "BRICK", "ALFRED"):
            models.complete(persona, msgs, 4)
        swaps = [e for e in events if e["event"] == "model_swap"]
        out["load_embedded_s"] = swaps[0]["load_s"]
        out["load_smollm2_s"] = swaps[1]["load_s"]
        out["swap_to_embedded_s"] = swaps[2]["swap_s"]
        out["swap_unloaded"] = swaps[2]["unloaded"]
        models.close()
    finally:
        image.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./puter.sh bench")
    ap.add_argument("--quick", "--no-cycle", action="store_true", dest="quick",
                    help="skip everything that loads a model")
    ap.add_argument("--n", type=int, default=3000, help="sequential round trips per measure")
    ap.add_argument("--missions-hard", action="store_true",
                    help="only the forty harder missions of tests/missions_hard.py (about 30 min)")
    ap.add_argument("--only", default="",
                    help="--missions-hard: only these comma-separated selectors (with the missions they build on)")
    ap.add_argument("--keep", default=None,
                    help="--missions-hard: run the kernel in this (new or empty) directory and keep it; "
                         "--flywheel: copy the run's homes (trained and tuned, and before) there at the end")
    ap.add_argument("--set", action="append", default=[], metavar="BATOS_NAME=VALUE",
                    help="--missions-hard or --flywheel: a setting for the kernels (repeatable), to measure a "
                         "lever or start the loop from another configuration")
    ap.add_argument("--flywheel", action="store_true",
                    help="only the self-tuning loop's before/after (tests/bench/flywheel.py; 47-49 min with "
                         "--rounds 3 --practice 4 --eval both on 33 training missions, 110 min with two of the "
                         "three rounds on the 41 now)")
    ap.add_argument("--rounds", type=int, default=3, help="--flywheel: rounds of the loop")
    ap.add_argument("--practice", type=int, default=3, help="--flywheel: missions in each round's practice suite")
    ap.add_argument("--eval", default="standard",
                    help="--flywheel: the evaluation set, standard, harder or both (missions_hard's 19, "
                         "missions_harder's 20, or the 39; flywheel.EVALUATIONS, checked before any work)")
    ap.add_argument("--ablation", action="store_true",
                    help="only the prompt ablation (tests/bench/ablation.py; about 12 min)")
    ap.add_argument("--scale", action="store_true",
                    help="only 1, 2 and 4 kernels on one ZEO / PostgreSQL image (tests/bench/scale.py; ~3 min)")
    ap.add_argument("--builds", action="store_true",
                    help="only the llama.cpp builds side by side (builds the alternative once, ~7 min)")
    args = ap.parse_args(argv)
    settings = {}
    for item in args.set:
        name, eq, value = item.partition("=")
        if not eq or not name.startswith("BATOS_"):
            raise SystemExit(f"--set {item}: expected BATOS_NAME=VALUE")
        settings[name] = value
    if args.set and not (args.missions_hard or args.flywheel):
        raise SystemExit("--set is for --missions-hard and --flywheel")
    if args.missions_hard:
        result = bench_missions_hard([x for x in args.only.split(",") if x], args.keep, settings)
        print(json.dumps(result))
        return 0
    if args.ablation:
        from tests.bench import ablation
        print("prompt ablation: the same twelve harder missions under each variant")
        print(json.dumps(ablation.run()))
        return 0
    if args.flywheel:
        from tests.bench import flywheel
        out = flywheel.run(args.rounds, args.practice, settings, keep=args.keep, evaluation=args.eval)
        out["settings"] = settings
        flywheel.report(out)
        print(json.dumps(out, default=str))
        return 0
    if args.scale:
        from tests.bench import scale
        out = scale.run()
        scale.report(out)
        print(json.dumps(out))
        return 0
    if args.builds:
        from tests.bench.llama_builds import compare, report
        result = compare()
        report(result)
        print(json.dumps(result))
        return 0
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="batos-bench-") as tmp:
        results.update(bench_watchdog(tmp))
        k = KernelProcess(Path(tmp) / "home")
        t0 = time.perf_counter()
        k.start(wait_s=30)
        results["start_to_ping_s"] = time.perf_counter() - t0
        try:
            with k.connect() as conn:
                conn.call("install_method", target_oid="genesis_obj", selector="add", source=ADD)
                results.update(bench_round_trips(conn, args.n))
                results.update(bench_sandbox(conn, min(args.n, 1000)))
            results.update(bench_load(k))
            results.update(bench_jupyter(min(args.n, 2000)))
            results["send_to_jupyter_ratio"] = results["send_p50_s"] / results["jupyter_execute_p50_s"]
            if not args.quick:
                results.update(bench_cycle(k))
                results.update(bench_translation(k))
        finally:
            k.stop()
        if not args.quick:
            k = KernelProcess(Path(tmp) / "missions", {"BATOS_MEMORY_ENABLED": "1"})
            k.start(wait_s=30)
            try:
                results.update(bench_missions(k))
            finally:
                k.stop()
            results.update(bench_memory())
            results.update(bench_models(tmp))
    print("BAT OS kernel benchmark")
    print(f"  start to first ping      {results['start_to_ping_s']:.3f} s")
    print(f"  ping round trip          p50 {ms(results['ping_p50_s'])}   p99 {ms(results['ping_p99_s'])}")
    print(f"  send_message round trip  p50 {ms(results['send_p50_s'])}   p99 {ms(results['send_p99_s'])}"
          f"   (target p50 <= 1 ms)")
    print(f"  Jupyter execute          p50 {ms(results['jupyter_execute_p50_s'])}   p99 "
          f"{ms(results['jupyter_execute_p99_s'])}   (same run, same machine)")
    print(f"  send_message / Jupyter   {results['send_to_jupyter_ratio']:.3f} at p50 (target <= 0.25)")
    print(f"  send_message, writing    p50 {ms(results['send_write_p50_s'])}   p99 "
          f"{ms(results['send_write_p99_s'])} (the call stores a slot: commit and fsync included)")
    print(f"  runaway method           Timeout after {results['runaway_answer_s']:.2f} s; the next call "
          f"took {ms(results['after_runaway_s'])}")
    print(f"  crash to serving         p50 {results['crash_to_serving_p50_s']:.2f} s   max "
          f"{results['crash_to_serving_max_s']:.2f} s (kill -9 until a new kernel answers; target <= 1 s)")
    print(f"  upgrade downtime         {results['upgrade_downtime_s']:.2f} s (stop, backup, one step, "
          f"start; {results['upgrade_end_to_end_s']:.2f} s from the file's arrival)")
    print(f"  pipelined send_message   {results['pipelined_per_s']:.0f} requests/s (64 in flight)")
    print(f"  load: {results['load_clients']} clients x {results['load_window']} in flight  "
          f"{results['load_requests']} requests, {results['load_busy']} Busy, {results['load_wrong']} wrong; "
          f"p50 {ms(results['load_p50_s'])}   p99 {ms(results['load_p99_s'])}   "
          f"{results['load_per_s']:.0f} requests/s")
    if "cycle_cold_s" in results:
        print(f"  cycle, cold (model load) {results['cycle_cold_s']:.1f} s   correct: {results['cycle_cold_correct']}")
        print(f"  cycle, warm              {results['cycle_warm_s']:.1f} s   correct: {results['cycle_warm_correct']}")
        print(f"  missions                 {results['missions_passed']}/{results['missions_missions']} passed, "
              f"median cycle {results['missions_median_cycle_s']:.1f} s")
        print(f"  query embedding          p50 {ms(results['embed_query_p50_s'])}")
        for n in (10_000, 100_000):
            print(f"  memory search, {n:>6} chunks  p50 {ms(results[f'memory_{n}_search_p50_s'])}   "
                  f"p99 {ms(results[f'memory_{n}_search_p99_s'])}   top-1 {results[f'memory_{n}_top1']:.2f}"
                  f"   (index built in {results[f'memory_{n}_index_s']:.2f} s)")
        print(f"  translation, warm        p50 {results['translate_warm_p50_s']:.2f} s   p90 "
              f"{results['translate_warm_p90_s']:.2f} s   accuracy {results['translate_accuracy']:.2f} "
              f"on {results['translate_cases']} utterances (target median <= 2 s)")
        print(f"  translation, cold        p50 {results['translate_cold_p50_s']:.2f} s (a new client process)")
        print(f"  model load from blob     embedded {results['load_embedded_s']:.2f} s, "
              f"smollm2 {results['load_smollm2_s']:.2f} s")
        print(f"  model swap               {results['swap_to_embedded_s']:.2f} s "
              f"(unloaded {results['swap_unloaded']})")
    print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
