"""``./puter.sh bench``: the kernel's figures, measured on a real kernel process.

    start-to-ping       process start until the first ping is answered (no model loaded)
    ping                round trip of ping (p50/p99)
    send_message        round trip to an installed method (p50/p99), one request at a time
    pipelined           send_message throughput with many requests in flight
    cycle               a cognitive cycle with the embedded model (cold: includes model load)

Options: --no-cycle skips the model; --n N sets the number of sequential sends.
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./puter.sh bench")
    ap.add_argument("--no-cycle", action="store_true", help="skip the cognitive cycle (no model)")
    ap.add_argument("--n", type=int, default=3000, help="sequential round trips per measure")
    args = ap.parse_args(argv)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="batos-bench-") as tmp:
        k = KernelProcess(Path(tmp) / "home")
        t0 = time.perf_counter()
        k.start(wait_s=30)
        results["start_to_ping_s"] = time.perf_counter() - t0
        try:
            with k.connect() as conn:
                conn.call("install_method", target_oid="genesis_obj", selector="add", source=ADD)
                results.update(bench_round_trips(conn, args.n))
            if not args.no_cycle:
                results.update(bench_cycle(k))
        finally:
            k.stop()
    print("BAT OS kernel benchmark")
    print(f"  start to first ping      {results['start_to_ping_s']:.3f} s")
    print(f"  ping round trip          p50 {ms(results['ping_p50_s'])}   p99 {ms(results['ping_p99_s'])}")
    print(f"  send_message round trip  p50 {ms(results['send_p50_s'])}   p99 {ms(results['send_p99_s'])}"
          f"   (target p50 <= 1 ms)")
    print(f"  pipelined send_message   {results['pipelined_per_s']:.0f} requests/s (64 in flight)")
    if "cycle_cold_s" in results:
        print(f"  cycle, cold (model load) {results['cycle_cold_s']:.1f} s   correct: {results['cycle_cold_correct']}")
        print(f"  cycle, warm              {results['cycle_warm_s']:.1f} s   correct: {results['cycle_warm_correct']}")
    print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
