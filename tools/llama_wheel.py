"""Build llama-cpp-python portably, cache the wheel by its build flags, install it.

Run by ``./puter.sh setup`` with the virtual environment's Python (standard library
only: it runs before anything else is installed)::

    python tools/llama_wheel.py install                 # BATOS_LLAMA_CMAKE_ARGS, else the build for this CPU
    python tools/llama_wheel.py install --build avx512 --target DIR   # a named build, beside the main one
    python tools/llama_wheel.py refuse [--build NAME]   # that build (default: the installed one) failed here:
                                                        # never choose it on this CPU again
    python tools/llama_wheel.py choice                  # the name of the build install would choose
    python tools/llama_wheel.py show                    # the flags, the cache key, the installed build

Why: llama-cpp-python compiles with ``-march=native`` by default.  On a CPU that
advertises AMX, ggml's AMX path dies with SIGILL at the first generation, and pip's
wheel cache hands a native wheel built on one CPU to a later set-up on another.  So
no build here is native: the default is the AVX-512 set (no AMX) when this CPU has
every feature it uses, else the x86-64-v3 baseline (AVX2, FMA, F16C, BMI2), built with
pip's cache off, and the wheel is kept under a name that carries a digest of the
version, the flags and the Python tag (and of this CPU's feature flags when a custom
build is native), so a wheel built with other flags is never reused.  A build that
failed set-up's self-check on this CPU (``refuse``) is not chosen again here.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"

# Named builds.  "avx512" is chosen where the CPU has every feature it needs (about 1.3x
# faster prompts here; SIGILL on a CPU without them), else "portable".
BUILDS = {
    "portable": "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
                "-DGGML_BMI2=ON",
    "avx512": "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
              "-DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON "
              "-DGGML_AVX512_BF16=ON",
}
# the CPU features each named build needs (as /proc/cpuinfo spells them)
NEEDS = {
    "portable": ("avx", "avx2", "fma", "f16c", "bmi2"),
    "avx512": ("avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq",
               "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16"),
}
MARKER = ".batos-build.json"   # written into the installed llama_cpp package


def say(message: str) -> None:
    print(f"puter: {message}", file=sys.stderr, flush=True)


def pinned_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        m = re.match(r"^\s*llama-cpp-python==([\w.]+)", line)
        if m:
            return m.group(1)
    raise SystemExit("puter: requirements.txt pins no llama-cpp-python==VERSION")


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def is_native(flags: str) -> bool:
    """Does this flag set let the compiler target the building CPU?"""
    m = re.findall(r"-DGGML_NATIVE=(\w+)", flags)
    return not m or m[-1].upper() not in ("OFF", "0", "FALSE", "NO")


def build_key(version: str, flags: str) -> str:
    parts = [version, " ".join(flags.split()), f"cp{sys.version_info.major}{sys.version_info.minor}",
             platform.machine()]
    if is_native(flags):   # a native build is only good for CPUs with these features
        parts.append(" ".join(sorted(cpu_flags())))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def cache_root() -> Path:
    raw = os.environ.get("BATOS_WHEEL_CACHE")
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "batos" / "wheels"


def chosen(build: str | None) -> tuple[str, str]:
    """(name, flags): a named build, else BATOS_LLAMA_CMAKE_ARGS, else the build for this
    CPU (``for_this_cpu``)."""
    if build:
        if build not in BUILDS:
            raise SystemExit(f"puter: unknown llama.cpp build {build!r} (known: {', '.join(BUILDS)})")
        return build, BUILDS[build]
    custom = os.environ.get("BATOS_LLAMA_CMAKE_ARGS", "").strip()
    if custom:
        return "custom", custom
    name = for_this_cpu()
    return name, BUILDS[name]


def for_this_cpu() -> str:
    """"avx512" when this CPU has every feature that build uses and it has not failed
    the self-check here, else "portable"."""
    have = cpu_flags()
    if have and not missing_features("avx512") and not refused_here("avx512"):
        return "avx512"
    return "portable"


def missing_features(name: str) -> list[str]:
    have = cpu_flags()
    if not have or name not in NEEDS:
        return []
    return [f for f in NEEDS[name] if f not in have]


def _refusal(name: str) -> Path:
    cpu = hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16]
    return cache_root() / f"refused-{name}-{cpu}"


def refused_here(name: str) -> bool:
    return _refusal(name).exists()


def refuse(target: Path | None, name: str | None = None) -> str:
    """Record that a named build (default: the installed one) failed on this CPU;
    returns its name ("" if it was no named alternative)."""
    name = name or installed_marker(target).get("build", "")
    if name in BUILDS and name != "portable":
        path = _refusal(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("failed ./puter.sh setup's self-check on this CPU\n")
        return name
    return ""


def build_wheel(version: str, flags: str, key: str) -> Path:
    """The cached wheel for (version, flags), built now if it is not there."""
    directory = cache_root() / f"llama-cpp-python-{version}-{key}"
    wheels = sorted(directory.glob("llama_cpp_python-*.whl"))
    if wheels:
        say(f"llama.cpp: using the cached wheel {wheels[-1]}")
        return wheels[-1]
    directory.parent.mkdir(parents=True, exist_ok=True)
    say(f"llama.cpp: compiling llama-cpp-python {version} with CMAKE_ARGS=\"{flags}\" "
        f"(about 7 min on 2 cores; pip's wheel cache is not used)")
    env = dict(os.environ, CMAKE_ARGS=flags, FORCE_CMAKE="1")
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 1))
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=".building-"))
    try:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
               "--no-binary", "llama-cpp-python", "-w", str(tmp), f"llama-cpp-python=={version}"]
        if subprocess.run(cmd, env=env).returncode != 0:
            raise SystemExit("puter: llama-cpp-python did not compile (see above); it needs a C++ "
                             "compiler and cmake (Debian: apt-get install build-essential cmake). "
                             "BATOS_LLAMA_CMAKE_ARGS changes the flags.")
        built = sorted(tmp.glob("llama_cpp_python-*.whl"))
        if not built:
            raise SystemExit("puter: pip reported success but left no llama-cpp-python wheel")
        (tmp / "flags.json").write_text(json.dumps({"version": version, "flags": flags, "key": key},
                                                   indent=2))
        shutil.rmtree(directory, ignore_errors=True)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory / built[0].name


def installed_marker(target: Path | None) -> dict:
    pkg = _package_dir(target)
    try:
        return json.loads((pkg / MARKER).read_text()) if pkg else {}
    except (OSError, ValueError):
        return {}


def _package_dir(target: Path | None) -> Path | None:
    if target is not None:
        pkg = target / "llama_cpp"
        return pkg if pkg.is_dir() else None
    probe = subprocess.run([sys.executable, "-c", "import importlib.util as u; s = u.find_spec('llama_cpp'); "
                            "print(s.submodule_search_locations[0] if s else '')"],
                           capture_output=True, text=True)
    out = probe.stdout.strip()
    return Path(out) if out else None


def install(build: str | None, target: Path | None) -> None:
    version = pinned_version()
    name, flags = chosen(build)
    key = build_key(version, flags)
    marker = installed_marker(target)
    if marker.get("key") == key and marker.get("version") == version:
        if "needs" not in marker:       # installed before the marker recorded what it needs
            pkg = _package_dir(target)
            if pkg is not None:
                (pkg / MARKER).write_text(json.dumps({**marker, "needs": list(NEEDS.get(name, ()))}, indent=2))
        return
    lacking = missing_features(name)
    if lacking:
        say(f"llama.cpp: warning: this CPU lacks {', '.join(lacking)}, which the {name} build "
            "uses; it will fail the self-check")
    wheel = build_wheel(version, flags, key)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-cache-dir"]
    if target is not None:
        shutil.rmtree(target, ignore_errors=True)
        cmd += ["--target", str(target)]
    if subprocess.run(cmd + [str(wheel)]).returncode != 0:
        raise SystemExit(f"puter: could not install {wheel}")
    if target is None:   # its own requirements (diskcache, jinja2, ...), without touching it again
        if subprocess.run([sys.executable, "-m", "pip", "install", "-q", str(wheel)]).returncode != 0:
            raise SystemExit(f"puter: could not install the requirements of {wheel}")
    pkg = _package_dir(target)
    if pkg is None:
        raise SystemExit("puter: llama_cpp is not importable after installing its wheel")
    (pkg / MARKER).write_text(json.dumps({"version": version, "build": name, "flags": flags,
                                          "key": key, "wheel": str(wheel),
                                          "needs": list(NEEDS.get(name, ()))}, indent=2))
    say(f"llama.cpp: installed the {name} build ({wheel.name}, key {key})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("install", "show", "choice", "refuse"))
    ap.add_argument("--build", choices=sorted(BUILDS), help="a named build instead of the default")
    ap.add_argument("--target", type=Path, help="install into this directory (pip --target)")
    args = ap.parse_args(argv)
    if args.action == "install":
        install(args.build, args.target)
        return 0
    if args.action == "choice":
        print(chosen(args.build)[0])
        return 0
    if args.action == "refuse":
        name = refuse(args.target, args.build)
        if not name:
            say("llama.cpp: the installed build is not a named alternative; nothing recorded")
            return 1
        say(f"llama.cpp: the {name} build will not be chosen on this CPU again")
        return 0
    version = pinned_version()
    name, flags = chosen(args.build)
    print(json.dumps({"version": version, "build": name, "flags": flags,
                      "key": build_key(version, flags), "cache": str(cache_root()),
                      "installed": installed_marker(args.target) or None}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
