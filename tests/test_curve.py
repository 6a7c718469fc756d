"""Remote Architects: the Synaptic Bridge with CurveZMQ (batos/curve.py), on real kernel
processes bound to loopback with BATOS_CURVE=1.  No test binds or dials anything but
127.0.0.1."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

import config
from batos import curve
from client.connection import Connection, CurveRefused, KernelUnavailable
from tests.conftest import ROOT, KernelProcess
from tests.test_watchdog import Watchdog

ADD = 'def add(self, a, b):\n    """Add two numbers."""\n    return a + b\n'
CLEAR = "did not accept this client's CURVE handshake"


def keys_for(home: Path, cert: Path | None = None, server_key: Path | None = None) -> curve.ClientKeys:
    """The keys a client on this machine uses (the home's local pair) or the given files."""
    settings = config.load({"BATOS_HOME": str(home), "BATOS_CURVE": "1"})
    return curve.client_keys(settings, str(server_key or ""), str(cert or ""))


class CurveKernel(KernelProcess):
    """A KernelProcess with BATOS_CURVE=1 whose own pings use the home's local pair."""

    def __init__(self, home: Path, env: dict | None = None):
        super().__init__(home, {"BATOS_CURVE": "1", **(env or {})})

    def client_keys(self, deadline: float) -> curve.ClientKeys:
        """The home's local pair, once the kernel has made it."""
        while not (curve.curve_dir(self.home) / "local.key_secret").exists():
            if (self.proc is not None and self.proc.poll() is not None) or time.monotonic() > deadline:
                raise RuntimeError(f"the kernel made no certificates:\n{self.log()}")
            time.sleep(0.05)
        return keys_for(self.home)


@pytest.fixture
def curve_kernel(make_kernel):
    return lambda home=None: make_kernel(home=home, cls=CurveKernel)


def new_client(directory: Path, name: str) -> tuple[Path, Path]:
    return curve.create_pair(directory, name)


def wait_for(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- certificates and settings (no processes) -------------------------------------------
def test_certificates_are_made_once_with_secret_files_readable_by_the_owner_only(tmp_path):
    directory = curve.ensure_kernel_certificates(tmp_path)
    first = {n: (directory / n).read_bytes() for n in ("server.key_secret", "local.key_secret")}
    for name in ("server.key_secret", "local.key_secret"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
        public, secret = zmq.auth.load_certificate(str(directory / name))
        assert len(public) == len(secret) == 40
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    local_public = zmq.auth.load_certificate(str(directory / "local.key"))[0]
    assert zmq.auth.load_certificate(str(directory / "authorized" / "local.key"))[0] == local_public
    assert zmq.auth.load_certificate(str(directory / "server.key")) == \
        (zmq.auth.load_certificate(str(directory / "server.key_secret"))[0], None)
    (directory / "server.key").unlink()                 # a lost public file is made again
    curve.ensure_kernel_certificates(tmp_path)
    assert {n: (directory / n).read_bytes() for n in first} == first
    assert (directory / "server.key").exists()
    assert not [p for p in directory.iterdir() if p.name.startswith(".new-")]


def test_a_non_loopback_endpoint_without_curve_is_a_config_error_naming_the_variable():
    with pytest.raises(config.ConfigError) as err:
        config.load({"BATOS_ZMQ_ENDPOINT": "tcp://10.1.2.3:5555", "BATOS_CURVE": "0"})
    assert "BATOS_ZMQ_ENDPOINT" in str(err.value) and "BATOS_CURVE" in str(err.value)
    with pytest.raises(config.ConfigError, match="BATOS_CURVE"):
        config.load({"BATOS_CURVE": "perhaps"})
    # CURVE is implied for an address other machines can reach, and off for loopback and ipc
    assert config.load({"BATOS_ZMQ_ENDPOINT": "tcp://0.0.0.0:5555"}).curve_enabled
    assert not config.load({"BATOS_ZMQ_ENDPOINT": "tcp://127.0.0.1:5555"}).curve_enabled
    assert not config.load({"BATOS_ZMQ_ENDPOINT": "ipc:///tmp/batos.sock"}).curve_enabled
    assert config.load({"BATOS_CURVE": "1"}).curve_enabled


def test_the_kernel_refuses_to_start_on_a_non_loopback_endpoint_without_curve(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    env.update(BATOS_HOME=str(tmp_path), BATOS_ZMQ_ENDPOINT="tcp://10.1.2.3:5555", BATOS_CURVE="0")
    proc = subprocess.run([sys.executable, "-m", "batos"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "BATOS_ZMQ_ENDPOINT" in proc.stderr and "BATOS_CURVE" in proc.stderr
    assert not (tmp_path / "live_image.fs").exists()      # stopped before anything was opened


# -- real kernels ------------------------------------------------------------------------


@pytest.mark.process
def test_an_authorized_client_pings_installs_and_sends(curve_kernel, tmp_path):
    home = tmp_path / "home"
    curve.ensure_kernel_certificates(home)          # an Architect authorized before the start
    public, secret = new_client(tmp_path / "alice", "alice")
    shutil.copy(public, curve.authorized_dir(home))
    k = curve_kernel(home)
    keys = keys_for(home, cert=secret, server_key=curve.curve_dir(home) / "server.key")
    with k.connect(keys=keys) as c:
        assert c.call("ping")["pong"] is True
        assert c.call("install_method", target_oid="genesis_obj", selector="add", source=ADD)["state"] == "COMPLETE"
        assert c.call("send_message", target_oid="genesis_obj", selector="add", args=[2, 3], kwargs={})["value"] == 5
    with k.connect() as c:                           # the home's local pair, as local tools use it
        assert c.call("send_message", target_oid="genesis_obj", selector="add", args=[20, 22], kwargs={})["value"] == 42


@pytest.mark.process
def test_an_unauthorized_client_gets_no_reply_and_the_kernel_logs_the_refusal(curve_kernel, tmp_path):
    k = curve_kernel()
    _public, secret = new_client(tmp_path / "mallory", "mallory")
    keys = keys_for(k.home, cert=secret)
    t0 = time.monotonic()
    with Connection(k.endpoint, timeout_s=3.0, curve=keys) as c:
        with pytest.raises(KernelUnavailable) as err:
            c.call("ping")
    assert isinstance(err.value, CurveRefused) and CLEAR in str(err.value)
    assert time.monotonic() - t0 < 2.5
    key = keys.public.decode()
    assert wait_for(lambda: "curve: refused a client" in k.log() and key in k.log()), k.log()
    events = k.wait_events(lambda ev: any(e.get("event") == "curve_refused" for e in ev))
    refused = [e for e in events if e.get("event") == "curve_refused"]
    assert refused and refused[0]["client_key"] == key and refused[0]["address"] == "127.0.0.1"
    with k.connect() as c:                            # the kernel serves on
        assert c.call("ping")["pong"] is True


@pytest.mark.process
def test_a_wrong_server_key_fails_fast_with_a_clear_message(curve_kernel, tmp_path):
    k = curve_kernel()
    impostor, _ = new_client(tmp_path / "other", "other_kernel")
    keys = keys_for(k.home, server_key=impostor)     # an authorized client, the wrong kernel key
    t0 = time.monotonic()
    with Connection(k.endpoint, timeout_s=10.0, curve=keys) as c:
        with pytest.raises(CurveRefused, match=CLEAR):
            c.call("ping")
    assert time.monotonic() - t0 < 3.0
    # the client program says the same and exits 1, well before its timeout
    env = {k_: v for k_, v in os.environ.items() if not k_.startswith("BATOS_")}
    env.update(BATOS_HOME=str(k.home), BATOS_ZMQ_ENDPOINT=k.endpoint, HF_HUB_OFFLINE="1")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "client", "--timeout", "60", "--server-key", str(impostor),
                           "--send", json.dumps({"command": "ping"})], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and CLEAR in proc.stderr, proc.stdout + proc.stderr
    assert f"the kernel at {k.endpoint}" in proc.stderr
    assert time.monotonic() - t0 < 30


@pytest.mark.process
def test_a_certificate_dropped_into_authorized_is_accepted_within_seconds(curve_kernel, tmp_path):
    k = curve_kernel()
    public, secret = new_client(tmp_path / "bob", "bob")
    keys = keys_for(k.home, cert=secret)
    with Connection(k.endpoint, timeout_s=2.0, curve=keys) as c, pytest.raises(CurveRefused):
        c.call("ping")
    staged = curve.authorized_dir(k.home) / ".bob.key.partial"   # copied in whole, then renamed
    shutil.copy(public, staged)
    os.replace(staged, curve.authorized_dir(k.home) / "bob.key")
    t0 = time.monotonic()

    def answers() -> bool:
        with Connection(k.endpoint, timeout_s=0.5, curve=keys) as c:
            try:
                return c.call("ping")["pong"] is True
            except KernelUnavailable:
                return False
    assert wait_for(answers, timeout_s=5.0), k.log()
    assert time.monotonic() - t0 < 5.0
    assert "added bob.key" in k.log()
    (curve.authorized_dir(k.home) / "bob.key").unlink()         # and taken away again
    assert wait_for(lambda: not answers(), timeout_s=5.0), k.log()


@pytest.mark.process
def test_the_watchdog_sees_a_curve_kernel_alive(tmp_path):
    home = tmp_path / "home"
    dog = Watchdog(home, {"BATOS_CURVE": "1"})
    try:
        assert wait_for(lambda: (curve.curve_dir(home) / "local.key_secret").exists(), 30), dog.log()
        assert wait_for(lambda: "serving (first start)" in dog.log(), 30), dog.log()
        with Connection(dog.endpoint, timeout_s=5.0, curve=keys_for(home)) as c:
            pid = c.call("ping")["pid"]
        time.sleep(3.0)                       # longer than the hang timeout (2 s) of FAST
        with Connection(dog.endpoint, timeout_s=5.0, curve=keys_for(home)) as c:
            assert c.call("ping")["pid"] == pid
        assert "hung" not in dog.log() and "restarting" not in dog.log(), dog.log()
        with Connection(dog.endpoint, timeout_s=1.0) as plain, pytest.raises(KernelUnavailable):
            plain.call("ping")                # without CURVE keys: nothing
        os.kill(pid, signal.SIGKILL)          # restarted with the same certificates

        def new_pid():
            with Connection(dog.endpoint, timeout_s=0.5, curve=keys_for(home)) as c:
                try:
                    return c.call("ping")["pid"] != pid
                except KernelUnavailable:
                    return False
        assert wait_for(new_pid, 30), dog.log()
    finally:
        dog.stop()
    assert "stopped when asked" in dog.log(), dog.log()


@pytest.mark.process
def test_the_doctor_and_the_client_use_the_local_pair_by_themselves(curve_kernel):
    k = curve_kernel()
    env = {key: v for key, v in os.environ.items() if not key.startswith("BATOS_")}
    env.update(BATOS_HOME=str(k.home), BATOS_ZMQ_ENDPOINT=k.endpoint, BATOS_CURVE="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "client", "--timeout", "10", "--send",
                           json.dumps({"command": "ping"})], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and '"pong": true' in proc.stdout, proc.stdout + proc.stderr
    proc = subprocess.run([sys.executable, "-m", "batos.doctor", "--json", "image"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "answers ping" in json.loads(proc.stdout)["image"]["message"]
