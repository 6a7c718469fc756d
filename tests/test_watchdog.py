"""The watchdog with real processes on temporary BATOS_HOMEs."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from client.connection import Connection, KernelUnavailable
from tests.conftest import ROOT, free_endpoint

pytestmark = pytest.mark.process
FAST = {"BATOS_WATCHDOG_HANG_TIMEOUT_S": "2", "BATOS_WATCHDOG_STABLE_S": "30",
        "BATOS_WATCHDOG_BACKOFF_MAX_S": "2", "BATOS_UPGRADE_POLL_S": "0.2",
        "BATOS_STOP_ASK_TIMEOUT_S": "3", "BATOS_STOP_TERM_TIMEOUT_S": "2", "BATOS_MEMORY_ENABLED": "0",
        "BATOS_GENESIS": "0", "BATOS_AUTOTELIC_INTERVAL_S": "0"}
SHOUT = "def shout(self, t):\n    return t.upper() + '!'\n"


class Watchdog:
    def __init__(self, home, extra_env=None):
        self.home = home
        self.endpoint = free_endpoint()
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
        env.update(FAST, BATOS_HOME=str(home), BATOS_ZMQ_ENDPOINT=self.endpoint)
        env.update(extra_env or {})
        self.log_path = home / "watchdog.log"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "watchdog"], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def ping(self, wait_s=30.0, not_pid=None):
        deadline = time.monotonic() + wait_s
        with Connection(self.endpoint, timeout_s=0.3) as c:
            while time.monotonic() < deadline:
                try:
                    r = c.call("ping")
                    if r["pid"] != not_pid:
                        return r
                except KernelUnavailable:
                    c.reconnect()
                time.sleep(0.05)
        raise AssertionError(f"no kernel answered within {wait_s}s:\n{self.log()}")

    def call(self, command, **fields):
        with Connection(self.endpoint, timeout_s=10) as c:
            return c.call(command, **fields)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:   # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def dog(tmp_path):
    d = Watchdog(tmp_path / "home")
    d.ping()
    yield d
    d.stop()


def test_sigkill_kernel_is_replaced_with_the_image_intact(dog):
    dog.call("install_method", target_oid="genesis_obj", selector="shout", source=SHOUT)
    pid = dog.ping()["pid"]
    os.kill(pid, signal.SIGKILL)
    new = dog.ping(not_pid=pid)
    assert new["pid"] != pid
    assert dog.call("send_message", target_oid="genesis_obj", selector="shout", args=["ok"]) == {"value": "OK!"}
    assert "killed by SIGKILL" in dog.log()


def test_crash_loop_backs_off_and_still_comes_back(dog):
    pid = None
    for _ in range(5):
        pid = dog.ping(not_pid=pid)["pid"]
        os.kill(pid, signal.SIGKILL)
    dog.ping(not_pid=pid, wait_s=60)
    log = dog.log()
    assert "5 in a row" in log
    assert "in 0.5s" in log and "in 2.0s" in log          # growing, capped delays


def test_stopped_kernel_is_detected_as_hung_and_replaced(dog):
    pid = dog.ping()["pid"]
    deadline = time.monotonic() + 60   # stop it once the watchdog counts it as started
    while f"kernel pid {pid} serving" not in dog.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 60
    while "hung" not in dog.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "hung" in dog.log(), dog.log()
    new = dog.ping(not_pid=pid, wait_s=60)
    assert new["pid"] != pid
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), dog.log()
    assert "hung" in dog.log()


def write_instructions(home, data):
    tmp = home / "update_instructions.json.tmp"
    tmp.write_text(data if isinstance(data, str) else json.dumps(data))
    os.replace(tmp, home / "update_instructions.json")


def wait_report(home, outcome, wait_s=120):
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        reports = sorted((home / "upgrades").glob(f"*.{outcome}.report.json")) if (home / "upgrades").exists() else []
        if reports:
            return json.loads(reports[-1].read_text())
        time.sleep(0.1)
    raise AssertionError(f"no {outcome} report within {wait_s}s")


def test_good_upgrade_runs_its_steps_and_restarts(dog):
    dog.call("install_method", target_oid="genesis_obj", selector="shout", source=SHOUT)
    pid = dog.ping()["pid"]
    marker = dog.home / "marker.txt"
    write_instructions(dog.home, {"id": "good-1", "steps": [
        ["python", "-c", f"open({str(marker)!r}, 'w').write('stepped')"]],
        "persona_models": {"BRICK": "smollm2"}, "parser_repo_id": "org/parser", "parser_filename": "p.gguf"})
    report = wait_report(dog.home, "applied")
    assert report["steps"][0]["exit_code"] == 0 and marker.read_text() == "stepped"
    assert report["downtime_s"] > 0 and report["revision_before"]
    overrides = json.loads((dog.home / "overrides.json").read_text())
    assert overrides["PERSONA_MODELS"] == {"BRICK": "smollm2"} and overrides["HF_PARSER_REPO_ID"] == "org/parser"
    assert dog.ping(not_pid=pid)["pid"] != pid
    assert dog.call("send_message", target_oid="genesis_obj", selector="shout", args=["x"]) == {"value": "X!"}
    assert not (dog.home / "update_instructions.json").exists()


def test_failing_upgrade_restores_the_previous_state(dog):
    dog.call("install_method", target_oid="genesis_obj", selector="shout", source=SHOUT)
    db = dog.home / "live_image.fs"
    write_instructions(dog.home, {"id": "bad-1", "steps": [
        ["python", "-c", f"open({str(db)!r}, 'w').write('garbage')"],
        ["python", "-c", "raise SystemExit(3)"]], "persona_models": {"BABS": "smollm2"}})
    report = wait_report(dog.home, "failed")
    assert [s["exit_code"] for s in report["steps"]] == [0, 3]
    assert report["rolled_back"] is True and "failed" in report["reason"]
    dog.ping()
    assert dog.call("send_message", target_oid="genesis_obj", selector="shout", args=["y"]) == {"value": "Y!"}
    assert not (dog.home / "overrides.json").exists()


def test_malformed_instructions_are_rejected_and_the_kernel_keeps_running(dog):
    pid = dog.ping()["pid"]
    write_instructions(dog.home, '{"id": "x", "steps": "rm -rf /"')
    report = wait_report(dog.home, "rejected")
    assert "JSON" in report["reason"]
    write_instructions(dog.home, {"id": "x y", "steps": [[]]})
    time.sleep(1.0)
    assert dog.ping()["pid"] == pid
    assert len(list((dog.home / "upgrades").glob("*.rejected.report.json"))) == 2


def test_sigterm_to_the_watchdog_leaves_no_process_behind(tmp_path):
    d = Watchdog(tmp_path / "h")
    pid = d.ping()["pid"]
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    assert not alive(pid)
    assert "stopped when asked" in d.log()


def test_kernel_stops_when_its_watchdog_dies(tmp_path):
    d = Watchdog(tmp_path / "h")
    pid = d.ping()["pid"]
    d.proc.kill()
    d.proc.wait(5)
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


def test_launcher_start_status_stop(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    env.update(FAST, BATOS_HOME=str(tmp_path / "h"), BATOS_ZMQ_ENDPOINT=free_endpoint())
    run = lambda *a: subprocess.run(["./puter.sh", *a], cwd=ROOT, env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    assert run("start").returncode == 0
    pid = int((tmp_path / "h" / "watchdog.pid").read_text())
    deadline = time.monotonic() + 30
    status = run("status")
    while "kernel: answering" not in status.stderr and time.monotonic() < deadline:
        status = run("status")
    assert "watchdog: running" in status.stderr and "kernel: answering" in status.stderr
    stopped = run("stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert not alive(pid)
    assert "not running" in run("status").stderr
