"""The llama.cpp build: portable flags, a wheel cache keyed by the flags, and the
installed build's own report of what it was compiled with."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("llama_wheel", ROOT / "tools" / "llama_wheel.py")
llama_wheel = importlib.util.module_from_spec(spec)
spec.loader.exec_module(llama_wheel)


def test_the_cache_key_changes_with_the_flags_the_version_and_a_native_cpu(monkeypatch):
    portable = llama_wheel.BUILDS["portable"]
    key = llama_wheel.build_key("0.3.36", portable)
    assert key == llama_wheel.build_key("0.3.36", "  " + portable.replace(" ", "   "))  # spacing only
    assert key != llama_wheel.build_key("0.3.36", llama_wheel.BUILDS["avx512"])
    assert key != llama_wheel.build_key("0.3.37", portable)
    # a native build (no GGML_NATIVE=OFF) is keyed by this CPU's features as well: a wheel
    # built natively on another CPU is never picked up here
    native = "-DGGML_CUDA=ON"
    assert llama_wheel.is_native(native) and not llama_wheel.is_native(portable)
    here = llama_wheel.build_key("0.3.36", native)
    monkeypatch.setattr(llama_wheel, "cpu_flags", lambda: {"sse2", "avx", "avx2", "amx_tile"})
    assert llama_wheel.build_key("0.3.36", native) != here
    assert llama_wheel.build_key("0.3.36", portable) == key   # portable: the CPU does not matter


def test_a_cached_wheel_is_reused_only_under_its_own_flags(tmp_path, monkeypatch):
    monkeypatch.setenv("BATOS_WHEEL_CACHE", str(tmp_path))
    flags = llama_wheel.BUILDS["portable"]
    key = llama_wheel.build_key("0.3.36", flags)
    cached = tmp_path / f"llama-cpp-python-0.3.36-{key}" / "llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not really a wheel")
    assert llama_wheel.build_wheel("0.3.36", flags, key) == cached   # found: no compiler runs
    calls = []
    monkeypatch.setattr(llama_wheel.subprocess, "run",
                        lambda cmd, **kw: calls.append((cmd, kw)) or subprocess.CompletedProcess(cmd, 1))
    other = llama_wheel.build_key("0.3.36", llama_wheel.BUILDS["avx512"])
    with pytest.raises(SystemExit, match="did not compile"):
        llama_wheel.build_wheel("0.3.36", llama_wheel.BUILDS["avx512"], other)
    cmd, kw = calls[0]
    assert "--no-cache-dir" in cmd and "llama-cpp-python" in cmd            # never pip's cache
    assert kw["env"]["CMAKE_ARGS"] == llama_wheel.BUILDS["avx512"]
    assert not list(tmp_path.glob(f"*{other}*"))                            # a failed build leaves nothing


def test_batos_llama_cmake_args_overrides_the_flags(monkeypatch):
    monkeypatch.setenv("BATOS_LLAMA_CMAKE_ARGS", "-DGGML_CUDA=ON -DGGML_NATIVE=OFF")
    assert llama_wheel.chosen(None) == ("custom", "-DGGML_CUDA=ON -DGGML_NATIVE=OFF")
    monkeypatch.delenv("BATOS_LLAMA_CMAKE_ARGS")
    assert llama_wheel.chosen(None) == ("portable", llama_wheel.BUILDS["portable"])
    with pytest.raises(SystemExit, match="unknown llama.cpp build"):
        llama_wheel.chosen("fastest")


def test_the_installed_llama_cpp_is_the_portable_build_without_amx():
    """What set-up installed reports its flags, and the library itself says it was compiled
    for AVX2 and without AMX or AVX-512 (so it runs on any x86-64-v3 CPU)."""
    marker = llama_wheel.installed_marker(None)
    assert marker, "llama_cpp was not installed by tools/llama_wheel.py (run ./puter.sh setup)"
    assert "-DGGML_NATIVE=OFF" in marker["flags"]
    out = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = out.stdout
    if marker["build"] == "portable":
        assert "AVX2 = 1" in info
        assert "AMX_INT8 = 1" not in info and "AVX512 = 1" not in info
    shown = json.loads(subprocess.run([sys.executable, str(ROOT / "tools" / "llama_wheel.py"), "show"],
                                      capture_output=True, text=True, timeout=60).stdout)
    assert shown["installed"]["key"] == marker["key"]
