"""``./puter.sh bench --scale``: 1, 2 and 4 kernels on one shared image.

For each storage (a ZEO server, and RelStorage on a throw-away PostgreSQL cluster when
PostgreSQL is installed) and each number of kernels, on a fresh image, one client per
kernel sends for SECONDS each time and we measure:

    read      calls per second of ``add`` (reads the object, runs in a sandbox worker,
              commits nothing), WINDOW sends in flight per client
    write     calls per second of ``bump``, WINDOW in flight per client, each on an object
              of its own (one commit each; no two calls write the same object)
    shared    calls per second of ``bump`` on one counter every kernel writes, one send at a
              time per client (so with one kernel nothing contends); ``retry %`` is the
              conflict retries per successful call: ZODB ConflictErrors retried by
              ``image.transact`` plus calls run again because the object changed under them
              (both counted from the kernels' logs); ``refused`` the sends that gave up
              after 6 attempts (a clear error; nothing committed); ``lost`` the increments
              replied minus the counter's final value (must be 0)

No model is loaded; the methods come from install_method.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from tests.conftest import KernelProcess
from tests.storage_servers import PostgresCluster, ZeoServer, pg_bindir

ADD = "def add(self, a, b):\n    return a + b\n"
BUMP = ("def bump(self):\n    self.count = self.count + 1 if hasattr(self, 'count') else 1\n"
        "    self._p_changed = True\n    return self.count\n")
KERNELS = (1, 2, 4)
SECONDS = 5.0
WINDOW = 8
RETRY_MARKS = ("image: conflict, retrying", "the object changed during the call; running it again")


def drive(kernels: list[KernelProcess], targets: list[list[str]], selector: str, seconds: float,
          window: int = WINDOW) -> dict:
    """One client per kernel, ``window`` sends in flight each (slot j sends to the client's
    targets[j % len]), for ``seconds``; replies counted."""
    done = [0] * len(kernels)
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    def client(i: int) -> None:
        with kernels[i].connect(timeout_s=60) as c:
            pending: list = []
            while True:
                while time.perf_counter() < stop_at and len(pending) < window:
                    slot = next(j for j in range(window) if j not in [p[1] for p in pending])
                    args = [i, slot] if selector == "add" else []
                    target = targets[i][slot % len(targets[i])]
                    pending.append((c.send({"command": "send_message", "target_oid": target,
                                            "selector": selector, "args": args, "stream": False}), slot))
                if not pending:
                    return
                reply = c.wait(pending.pop(0)[0], 60)
                if reply["ok"]:
                    done[i] += 1
                else:
                    errors.append(f"{reply['error']['type']}: {reply['error']['message'][:120]}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(kernels))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    wall = time.perf_counter() - t0
    return {"calls": sum(done), "per_s": sum(done) / wall, "errors": len(errors), "first_error": errors[:1]}


def retries(kernels: list[KernelProcess]) -> int:
    return sum(k.log_path.read_text(errors="replace").count(m) for k in kernels if k.log_path.exists()
               for m in RETRY_MARKS)


def measure(uri: str, n: int, tmp: Path, seconds: float) -> dict:
    kernels = [KernelProcess(tmp / f"k{n}-{i}", {"BATOS_DB_URI": uri, "BATOS_KERNEL_NAME": f"k{n}-{i}"})
               for i in range(n)]
    try:
        for k in kernels:
            k.start(60)
        with kernels[0].connect() as c:
            c.call("install_method", target_oid="genesis_obj", selector="add", source=ADD)
            c.call("install_method", target_oid="genesis_obj", selector="bump", source=BUMP)
            own = [[c.call("create_object", name=f"counter {i}.{j}", parents=["genesis_obj"])["oid"]
                    for j in range(WINDOW)] for i in range(n)]
        for k in kernels:       # warm: each kernel's workers and caches
            with k.connect() as c:
                for _ in range(20):
                    c.call("send_message", target_oid="genesis_obj", selector="add", args=[1, 2])
        out = {"kernels": n}
        out["read"] = drive(kernels, [["genesis_obj"]] * n, "add", seconds)
        out["write"] = drive(kernels, own, "bump", seconds)
        before = retries(kernels)
        out["shared"] = drive(kernels, [["genesis_obj"]] * n, "bump", seconds, window=1)
        time.sleep(0.5)     # the kernels' log lines are flushed
        out["shared"]["retries"] = retries(kernels) - before
        with kernels[-1].connect() as c:
            final = c.call("send_message", target_oid="genesis_obj", selector="count")["value"]
        out["shared"]["lost"] = out["shared"]["calls"] - final
        return out
    finally:
        for k in kernels:
            try:
                k.stop(20)
            except RuntimeError:
                k.kill()


def run(seconds: float = SECONDS) -> dict:
    results: dict = {"seconds": seconds, "window": WINDOW, "storages": {}}
    with tempfile.TemporaryDirectory(prefix="batos-scale-") as tmp:
        for n in KERNELS:
            server = ZeoServer(Path(tmp) / f"zeo{n}").start()
            try:
                results["storages"].setdefault("zeo", []).append(measure(server.uri, n, Path(tmp) / "zeo", seconds))
            finally:
                server.stop()
        if pg_bindir() is None:
            results["postgresql"] = "skipped: PostgreSQL is not installed (apt-get install postgresql)"
        else:
            cluster = PostgresCluster().start()
            try:
                for n in KERNELS:
                    results["storages"].setdefault("postgresql", []).append(
                        measure(cluster.new_database(), n, Path(tmp) / "pg", seconds))
            finally:
                cluster.stop()
    return results


def report(results: dict) -> None:
    print(f"BAT OS scale-out: kernels on one image ({results['seconds']:g} s per figure, one client "
          f"per kernel; read and write {results['window']} in flight each, shared 1)")
    print("  storage     kernels   read/s   write/s   shared/s   retry %   refused   lost   other errors")
    for name, rows in results["storages"].items():
        for r in rows:
            sh = r["shared"]
            rate = 100.0 * sh["retries"] / sh["calls"] if sh["calls"] else 0.0
            errs = r["read"]["errors"] + r["write"]["errors"]
            print(f"  {name:<11} {r['kernels']:>7} {r['read']['per_s']:>8.0f} {r['write']['per_s']:>9.0f} "
                  f"{sh['per_s']:>10.0f} {rate:>9.1f} {sh['errors']:>9} {sh['lost']:>6} {errs:>14}")
    if isinstance(results.get("postgresql"), str):
        print(f"  postgresql  {results['postgresql']}")
