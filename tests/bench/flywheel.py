"""``./puter.sh bench --flywheel``: does the self-tuning loop make the system better?

In one run, from a fresh image (memory and codex on):

1. **training**: the training set is taught to ``genesis_obj`` (the loop's practice
   suite is drawn from those verified missions); the kernel stops and its image is
   copied: the copy is **before**, trained but never tuned;
2. **rounds**: the kernel starts again on the original, is left quiet, and the
   autotelic loop runs ``--rounds`` rounds (ALFRED proposes, the practice suite
   decides, a winner is adopted): that image is **after**;
3. **evaluation**: the evaluation set (missions the loop never practised on) is taught
   to a new object on each image, with its own unit checks: pass rate and median cycle
   time, before and after.  Each image sees only its own evaluation methods, so
   neither side learns from the other's answers.

The evaluation set is tests/missions_hard.py's numbers, dates and parsing missions; the
training set its strings and lists missions.  Long (about 20-40 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from tests.conftest import KernelProcess
from tests.missions_hard import MISSIONS, STATEFUL, run_missions, summary

TRAINING = [m for m in MISSIONS[:13] if m[4] != STATEFUL]
EVALUATION = [m for m in MISSIONS[13:32] if m[4] != STATEFUL]


def evaluate(k: KernelProcess, name: str) -> dict:
    with k.connect(timeout_s=900) as conn:
        oid = conn.call("create_object", name=name, parents=["root_obj"])["oid"]
        records = run_missions(conn, target=oid, missions=EVALUATION)
    out = summary(records)
    out["failed"] = [r["selector"] for r in records if not r["passed"]]
    return out


def run(rounds: int, practice: int, settings: dict | None = None, keep: str | None = None) -> dict:
    """``settings``: BATOS_ settings every kernel of the run gets (the configuration the
    loop starts from, the same before and after; what a round adopts overrides it);
    ``keep``: a new directory the run's two homes (``home``: trained, tuned and
    evaluated; ``before``) are copied to at the end, logs included."""
    if keep and Path(keep).exists():
        raise SystemExit(f"--keep {keep}: the directory exists")
    with tempfile.TemporaryDirectory(prefix="batos-bench-flywheel-") as tmp:
        home, copy = Path(tmp) / "home", Path(tmp) / "before"
        loop = {**(settings or {}), "BATOS_MEMORY_ENABLED": "1", "BATOS_AUTOTELIC_INTERVAL_S": "1",
                "BATOS_AUTOTELIC_IDLE_S": "5", "BATOS_AUTOTELIC_PRACTICE": str(practice)}
        out: dict = {}
        k = KernelProcess(home, {**loop, "BATOS_AUTOTELIC_INTERVAL_S": "0"})
        k.start(wait_s=60)
        try:
            k.wait_events(lambda ev: any(e["event"] == "codex_ingested" for e in ev), 180)
            with k.connect(timeout_s=900) as c:
                out["training"] = summary(run_missions(c, missions=TRAINING))
            time.sleep(5)      # the skill library's last ingests
        finally:
            k.stop()
        shutil.copytree(home, copy)
        k = KernelProcess(home, loop)
        k.start(wait_s=60)
        try:
            t0 = time.monotonic()
            seen = lambda ev: [e for e in ev if e["event"] == "adaptation"]   # noqa: E731
            k.wait_events(lambda ev: len(seen(ev)) >= rounds, 900 * rounds)
            out["rounds_s"] = round(time.monotonic() - t0, 1)
            out["rounds"] = [{"id": e["id"], "proposal": e.get("proposal"), "scores": e.get("scores"),
                              "adopted": e["adopted"], "outcome": e.get("outcome"), "seconds": e.get("seconds")}
                             for e in seen(k.events())][:rounds]
            # a round may be running: stop the loop before evaluating (its adaptations stay)
        finally:
            k.stop()
        after = KernelProcess(home, {**loop, "BATOS_AUTOTELIC_INTERVAL_S": "0"})
        after.start(wait_s=60)
        try:
            with after.connect() as c:
                out["adaptations"] = c.call("list_adaptations")["adaptations"]
            out["after"] = evaluate(after, "evaluation")
        finally:
            after.stop()
        before = KernelProcess(copy, {**loop, "BATOS_AUTOTELIC_INTERVAL_S": "0"})
        before.start(wait_s=60)
        try:
            out["before"] = evaluate(before, "evaluation")
        finally:
            before.stop()
            if keep:
                shutil.copytree(tmp, keep)
    return out


def report(out: dict) -> None:
    b, a = out["before"], out["after"]
    print("flywheel: the evaluation set before and after the self-tuning rounds (same run)")
    print(f"  before  {b['passed']}/{b['missions']} pass, median cycle {b['median_cycle_s']:.1f} s  "
          f"failed: {', '.join(b['failed']) or '-'}")
    print(f"  after   {a['passed']}/{a['missions']} pass, median cycle {a['median_cycle_s']:.1f} s  "
          f"failed: {', '.join(a['failed']) or '-'}")
    print(f"  training {out['training']['passed']}/{out['training']['missions']}; "
          f"{len(out['rounds'])} rounds in {out['rounds_s']:.0f} s, "
          f"{sum(r['adopted'] for r in out['rounds'])} adopted")
    for r in out["rounds"]:
        print(f"    {r['id']} {json.dumps(r['proposal'])[:140]}  {json.dumps(r['scores'])}  "
              f"adopted={r['adopted']}  ({r['outcome']})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="./puter.sh bench --flywheel")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--practice", type=int, default=3)
    args = ap.parse_args(argv)
    out = run(args.rounds, args.practice)
    report(out)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
