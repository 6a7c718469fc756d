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
    name = llama_wheel.for_this_cpu()
    assert llama_wheel.chosen(None) == (name, llama_wheel.BUILDS[name])
    with pytest.raises(SystemExit, match="unknown llama.cpp build"):
        llama_wheel.chosen("fastest")


AVX512_CPU = {"sse2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq",
              "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile"}


def test_the_avx512_build_is_chosen_only_where_the_cpu_has_all_it_uses(tmp_path, monkeypatch):
    monkeypatch.setenv("BATOS_WHEEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BATOS_LLAMA_CMAKE_ARGS", raising=False)
    monkeypatch.setattr(llama_wheel, "cpu_flags", lambda: set(AVX512_CPU))
    assert llama_wheel.chosen(None) == ("avx512", llama_wheel.BUILDS["avx512"])
    assert "AMX" not in llama_wheel.BUILDS["avx512"] and "-DGGML_NATIVE=OFF" in llama_wheel.BUILDS["avx512"]
    for missing in ("avx512_bf16", "avx512vbmi", "avx512bw"):
        monkeypatch.setattr(llama_wheel, "cpu_flags", lambda m=missing: AVX512_CPU - {m})
        assert llama_wheel.for_this_cpu() == "portable", missing
    monkeypatch.setattr(llama_wheel, "cpu_flags", lambda: set())      # unknown CPU: the safe one
    assert llama_wheel.for_this_cpu() == "portable"
    # the AVX-512 build failed set-up's self-check on this CPU: never chosen here again
    monkeypatch.setattr(llama_wheel, "cpu_flags", lambda: set(AVX512_CPU))
    target = tmp_path / "site"
    (target / "llama_cpp").mkdir(parents=True)
    (target / "llama_cpp" / llama_wheel.MARKER).write_text(json.dumps({"build": "avx512"}))
    assert llama_wheel.refuse(target) == "avx512"
    assert llama_wheel.for_this_cpu() == "portable"
    monkeypatch.setattr(llama_wheel, "cpu_flags", lambda: AVX512_CPU | {"avx512_fp16"})   # another CPU
    assert llama_wheel.for_this_cpu() == "avx512"
    (target / "llama_cpp" / llama_wheel.MARKER).write_text(json.dumps({"build": "portable"}))
    assert llama_wheel.refuse(target) == ""          # the baseline is never refused
    # set-up refuses AVX-512 by name once the portable build (installed now) has passed
    assert llama_wheel.refuse(target, "avx512") == "avx512"
    assert llama_wheel.for_this_cpu() == "portable"


def test_the_kernel_refuses_a_build_this_cpu_cannot_run(monkeypatch):
    """A build whose recorded needs this CPU lacks is refused with what to do, not run
    into a SIGILL; the installed one runs here."""
    from batos.llm import llama
    from batos.llm.base import GenerationError
    from batos.llm.embedded import smollm2_gguf
    marker = llama_wheel.installed_marker(None)
    assert llama.build_lacks() == []
    if marker.get("build") in llama_wheel.NEEDS:     # a named build records what it needs
        assert marker["needs"] == list(llama_wheel.NEEDS[marker["build"]])
        assert llama.build_lacks(cpu={"sse2"}) == marker["needs"]
    monkeypatch.setattr(llama, "build_lacks", lambda: ["avx512f"])
    backend = llama.LlamaBackend(smollm2_gguf(), n_ctx=256, n_threads=1, seed=0)
    with pytest.raises(GenerationError, match=r"lacks \(avx512f\).*\./puter\.sh setup"):
        backend.load()
    assert not backend.loaded


def test_the_installed_llama_cpp_is_the_build_for_this_cpu_without_amx():
    """What set-up installed reports its flags, and the library itself says it was compiled
    for AVX2 (and AVX-512 where this CPU has all that build uses), never for AMX."""
    marker = llama_wheel.installed_marker(None)
    assert marker, "llama_cpp was not installed by tools/llama_wheel.py (run ./puter.sh setup)"
    assert "-DGGML_NATIVE=OFF" in marker["flags"]
    out = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = out.stdout
    if marker["build"] != "custom":      # BATOS_LLAMA_CMAKE_ARGS: the flags are the user's
        assert marker["build"] == llama_wheel.for_this_cpu()
        assert "AVX2 = 1" in info and "AMX_INT8 = 1" not in info
        if marker["build"] == "portable":
            assert "AVX512 = 1" not in info
        else:
            assert "AVX512 = 1" in info and not llama_wheel.missing_features(marker["build"])
    shown = json.loads(subprocess.run([sys.executable, str(ROOT / "tools" / "llama_wheel.py"), "show"],
                                      capture_output=True, text=True, timeout=60).stdout)
    assert shown["installed"]["key"] == marker["key"]
