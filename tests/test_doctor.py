"""The set-up self-check (python -m batos.doctor, ./puter.sh doctor): each check on the
real parts, and a llama.cpp that dies by signal reported with what to do."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batos import doctor

ROOT = Path(__file__).resolve().parent.parent


def run_doctor(*checks, env=None, timeout=400):
    base = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "batos.doctor", "--json", *checks], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.model
def test_every_check_passes_on_this_machine(tmp_path):
    proc = run_doctor(env={"BATOS_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)
    assert set(results) == set(doctor.CHECKS) and all(r["ok"] for r in results.values())
    assert results["llama"]["details"]["tokens"] >= 1
    assert results["embedder"]["details"]["dim"] == 384
    assert "seccomp" in results["sandbox"]["details"]["layers"]
    assert "not created yet" in results["image"]["message"]


@pytest.mark.process
def test_the_image_check_reads_an_image_and_defers_to_the_kernel_that_holds_it(make_kernel, tmp_path):
    k = make_kernel(home=tmp_path / "home")
    proc = run_doctor("image", env={"BATOS_HOME": str(k.home), "BATOS_ZMQ_ENDPOINT": k.endpoint})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "answers ping" in json.loads(proc.stdout)["image"]["message"]
    k.stop()
    proc = run_doctor("image", env={"BATOS_HOME": str(k.home)})
    result = json.loads(proc.stdout)["image"]
    assert proc.returncode == 0 and result["details"]["objects"] >= 4 and result["details"]["boots"] == 1


def test_a_llama_cpp_that_dies_by_sigill_fails_the_check_and_says_which_flag_to_change(tmp_path):
    # a stand-in llama_cpp package (tests only) whose first generation dies the way an AMX
    # build does on such a CPU: by SIGILL, taking the process with it
    shim = tmp_path / "shim" / "llama_cpp"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(textwrap.dedent("""
        import os, signal
        def llama_supports_gpu_offload(): return False
        def llama_print_system_info(): return b"AMX_INT8 = 1"
        class Llama:
            def __init__(self, **kw): pass
            def __call__(self, *a, **kw): os.kill(os.getpid(), signal.SIGILL)
    """))
    (shim / ".batos-build.json").write_text(json.dumps({"build": "custom", "flags": "-DGGML_NATIVE=ON"}))
    proc = run_doctor("llama", env={"PYTHONPATH": str(tmp_path / "shim"), "BATOS_HOME": str(tmp_path)})
    assert proc.returncode == 1
    message = json.loads(proc.stdout)["llama"]["message"]
    assert "SIGILL" in message and "illegal instruction" in message
    assert "-DGGML_NATIVE=ON" in message                     # the build's own flags
    assert "BATOS_LLAMA_CMAKE_ARGS=" in message and "./puter.sh setup" in message


def test_unknown_checks_and_bad_settings_are_refused_clearly(tmp_path):
    proc = run_doctor("gpu")
    assert proc.returncode == 2 and "unknown check" in proc.stderr
    proc = run_doctor("image", env={"BATOS_LLM_N_GPU_LAYERS": "-5"})
    assert proc.returncode == 1 and "BATOS_LLM_N_GPU_LAYERS" in proc.stderr
