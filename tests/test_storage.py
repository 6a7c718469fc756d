"""One image, many kernels: BATOS_DB_URI and the storages behind batos/image.py, with real
ZEO servers, a real PostgreSQL cluster and real kernel processes (no model: methods come
from install_method, and the cycle test scripts the model)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import config
from batos import storage
from tests.conftest import ROOT, KernelProcess, free_endpoint
from tests.storage_servers import PG_MISSING, PostgresCluster, ZeoServer, pg_bindir

BUMP = ('def bump(self):\n    """Add one to the count; return it."""\n'
        '    self.count = self.count + 1 if hasattr(self, "count") else 1\n'
        '    self._p_changed = True\n    return self.count\n')
SHOUT = 'def shout(self, t):\n    """Shout t."""\n    return t.upper() + "!"\n'
N_EACH = 100


# ---------------------------------------------------------------- the URI (fast tier)

@pytest.mark.parametrize("uri, kind, where", [
    ("", "file", "{home}/live_image.fs"),
    ("file:///srv/img/Data.fs", "file", "/srv/img/Data.fs"),
    ("zeo://127.0.0.1:8100", "zeo", "zeo://127.0.0.1:8100"),
    ("zeo:///run/batos/zeo.sock", "zeo", "zeo:///run/batos/zeo.sock"),
    ("postgresql://batos:secret@127.0.0.1:5432/batos?sslmode=disable", "postgresql",
     "postgresql://batos:***@127.0.0.1:5432/batos?sslmode=disable"),
])
def test_a_uri_names_the_storage(tmp_path, uri, kind, where):
    s = config.load({"BATOS_HOME": str(tmp_path), "BATOS_DB_URI": uri})
    spec = storage.spec_for(s)
    assert spec.kind == kind and spec.describe() == where.format(home=tmp_path)
    assert spec.shared == (kind != "file")
    if kind == "file" and not uri:     # the default is today's FileStorage in BATOS_HOME
        assert spec.path == s.db_path and spec.blob_dir == s.blob_path
        assert s.log_path == tmp_path / "metacognition.jsonl"
    if kind == "postgresql":          # BAT OS's own options never reach libpq
        assert storage.parse(uri + "&blob_dir=/c&keep_history=false", tmp_path, s.DB_FILE,
                             s.BLOB_DIR).dsn == "postgresql://batos:secret@127.0.0.1:5432/batos?sslmode=disable"


@pytest.mark.parametrize("uri, says", [
    ("mysql://x/y", "is not a storage URI BAT OS knows"),
    ("zeo://127.0.0.1", "a port is needed"),
    ("zeo://127.0.0.1:8100?cache=1", "unknown option(s) cache"),
    ("zeo://127.0.0.1:8100?wait_timeout=soon", "wait_timeout='soon' is not a number"),
    ("zeo://127.0.0.1:8100?shared_blob_dir=true", "needs blob_dir="),
    ("postgresql://", "names no database"),
    ("file://", "names no file"),
])
def test_a_bad_uri_is_a_config_error_naming_the_variable(tmp_path, uri, says):
    with pytest.raises(config.ConfigError) as info:
        config.load({"BATOS_HOME": str(tmp_path), "BATOS_DB_URI": uri})
    assert "BATOS_DB_URI" in str(info.value) and says in str(info.value)


def test_kernels_on_a_shared_image_keep_logs_named_by_kernel(tmp_path):
    shared = {"BATOS_HOME": str(tmp_path), "BATOS_DB_URI": "zeo://127.0.0.1:8100"}
    a = config.load({**shared, "BATOS_ZMQ_ENDPOINT": "tcp://127.0.0.1:5601"})
    b = config.load({**shared, "BATOS_ZMQ_ENDPOINT": "tcp://127.0.0.1:5602"})
    assert a.log_path != b.log_path and a.log_path.name.endswith("-5601.jsonl")
    named = config.load({**shared, "BATOS_KERNEL_NAME": "west-1"})
    assert named.log_path == tmp_path / "metacognition-west-1.jsonl"
    with pytest.raises(config.ConfigError, match="BATOS_KERNEL_NAME"):
        config.load({**shared, "BATOS_KERNEL_NAME": "no spaces"})


# ---------------------------------------------------------------- real servers

@pytest.fixture
def zeo(tmp_path):
    server = ZeoServer(tmp_path / "zeo").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pg_cluster():
    if pg_bindir() is None:
        # a missing server is a failure, not a quiet skip, unless the developer turned
        # these tests off knowingly
        if os.environ.get("BATOS_TEST_WITHOUT_POSTGRES") == "1":
            pytest.skip("PostgreSQL tests turned off by BATOS_TEST_WITHOUT_POSTGRES=1")
        pytest.fail(PG_MISSING + " (or set BATOS_TEST_WITHOUT_POSTGRES=1 to leave these tests out)")
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def kernels(tmp_path, make_kernel):
    def make(uri: str, name: str, **env) -> KernelProcess:
        k = make_kernel(env={"BATOS_DB_URI": uri, "BATOS_KERNEL_NAME": name, **env}, home=tmp_path / name,
                        start=False)
        return k.start(60)
    return make


def events(k: KernelProcess) -> list[dict]:
    path = k.home / f"metacognition-{k.extra_env['BATOS_KERNEL_NAME']}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def hammer(kernels: list[KernelProcess], n_each: int) -> tuple[list[int], int]:
    """Each kernel gets its own client sending ``bump`` until n_each were acknowledged, all
    at once; returns the values the clients were given back, and how many sends were
    refused because the counter kept changing under them (the clear error of optimistic
    concurrency: the call committed nothing, and the client sends it again)."""
    from client.connection import KernelError
    values: list[int] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(k: KernelProcess) -> None:
        try:
            with k.connect(timeout_s=30) as c:
                acked = 0
                while acked < n_each:
                    try:
                        v = c.call("send_message", target_oid="genesis_obj", selector="bump")["value"]
                    except KernelError as exc:
                        if "kept changing" not in str(exc) and "conflict" not in str(exc):
                            raise
                        with lock:
                            refused.append(str(exc))
                        continue
                    acked += 1
                    with lock:
                        values.append(v)
        except BaseException as exc:   # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=client, args=(k,)) for k in kernels]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(refused) < n_each * len(kernels) // 5, refused[:3]
    return values, len(refused)


def two_kernels_share_one_image(make, uri: str) -> tuple[KernelProcess, KernelProcess]:
    """The core, on any shared storage: no lost update, and an install seen by the other."""
    a, b = make(uri, "kernel-a"), make(uri, "kernel-b")
    with a.connect() as ca:
        assert ca.call("install_method", target_oid="genesis_obj", selector="bump", source=BUMP)["state"] == "COMPLETE"
    values, refused = hammer([a, b], N_EACH)
    print(f"{len(values)} increments acknowledged, {refused} sends refused after conflicts")
    # every increment landed: the clients were handed 1..200, each once
    assert sorted(values) == list(range(1, 2 * N_EACH + 1))
    with a.connect() as ca, b.connect() as cb:
        assert ca.call("send_message", target_oid="genesis_obj", selector="count")["value"] == 2 * N_EACH
        assert cb.call("send_message", target_oid="genesis_obj", selector="count")["value"] == 2 * N_EACH
        # installed through b, answered by a at once (its next transaction sees b's commit)
        cb.call("install_method", target_oid="genesis_obj", selector="shout", source=SHOUT)
        assert ca.call("send_message", target_oid="genesis_obj", selector="shout", args=["hi"])["value"] == "HI!"
        assert "shout" in [m["selector"] for m in ca.call("describe", target_oid="genesis_obj")["methods"]]
    return a, b


@pytest.mark.process
def test_two_kernels_on_zeo_lose_no_update_and_see_each_others_methods(zeo, kernels):
    a, b = two_kernels_share_one_image(kernels, zeo.uri)
    # each keeps its own log, named by kernel, with the installs made through it
    for k, selector in ((a, "bump"), (b, "shout")):
        installs = lambda: [e["selector"] for e in events(k) if e.get("event") == "install"]  # noqa: E731
        deadline = time.monotonic() + 10
        while selector not in installs() and time.monotonic() < deadline:   # flushed asynchronously
            time.sleep(0.05)
        assert set(installs()) == {selector}
        assert any(e.get("event") == "kernel_start" for e in events(k))
        assert not (k.home / "metacognition.jsonl").exists()


@pytest.mark.process
def test_one_kernel_killed_the_other_keeps_serving_on_zeo(zeo, kernels):
    a, b = kernels(zeo.uri, "kernel-a"), kernels(zeo.uri, "kernel-b")
    with a.connect() as ca:
        ca.call("install_method", target_oid="genesis_obj", selector="bump", source=BUMP)
        assert ca.call("send_message", target_oid="genesis_obj", selector="bump")["value"] == 1
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    with b.connect() as cb:
        assert [cb.call("send_message", target_oid="genesis_obj", selector="bump")["value"]
                for _ in range(3)] == [2, 3, 4]
        cb.call("install_method", target_oid="genesis_obj", selector="shout", source=SHOUT)
    a.start(60)     # the same home again: the image is where it was, with b's work in it
    with a.connect() as ca:
        assert ca.call("send_message", target_oid="genesis_obj", selector="bump")["value"] == 5
        assert ca.call("send_message", target_oid="genesis_obj", selector="shout", args=["x"])["value"] == "X!"


@pytest.mark.process
def test_a_kernel_without_its_zeo_server_exits_with_a_clear_error(tmp_path):
    port = ZeoServer(tmp_path).port      # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    env.update(BATOS_HOME=str(tmp_path / "h"), BATOS_ZMQ_ENDPOINT=free_endpoint(), BATOS_MEMORY_ENABLED="0",
               BATOS_GENESIS="0", BATOS_DB_URI=f"zeo://127.0.0.1:{port}?wait_timeout=1")
    proc = subprocess.run([sys.executable, "-m", "batos"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert f"zeo://127.0.0.1:{port}" in proc.stderr and "./puter.sh zeo" in proc.stderr
    env["BATOS_DB_URI"] = "zeo://127.0.0.1"
    proc = subprocess.run([sys.executable, "-m", "batos"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "BATOS_DB_URI" in proc.stderr


# ---------------------------------------------------------------- the same selector twice

def _in_process(tmp_path: Path, uri: str, name: str):
    from tests.conftest import InProcessKernel
    return InProcessKernel(config.load({"BATOS_HOME": str(tmp_path / name), "BATOS_MEMORY_ENABLED": "0",
                                        "BATOS_GENESIS": "0", "BATOS_DB_URI": uri, "BATOS_KERNEL_NAME": name,
                                        "BATOS_CYCLE_RETRIES": "0"}))


@pytest.mark.process
def test_the_same_missing_selector_on_two_kernels_installs_one_method(zeo, tmp_path):
    """Both kernels start a cycle for greet; both write a method (scripted: the model is
    not what is tested); the first to commit installs it, the other adopts it."""
    from batos.protocol import MissionBrief
    from tests.scripted import ScriptedModel
    both_written = threading.Barrier(2, timeout=60)

    class Together(ScriptedModel):
        def complete(self, *a, **kw):
            if kw.get("grammar") is None and (len(a) < 4 or a[3] is None):
                both_written.wait()     # each cycle has started before either installs
            return super().complete(*a, **kw)

    def method(who: str) -> str:
        return f'```python\ndef greet(self, name):\n    """Greet name (written by {who})."""\n' \
               '    return "hello " + name\n```'

    ka, kb = _in_process(tmp_path, zeo.uri, "in-a"), _in_process(tmp_path, zeo.uri, "in-b")
    try:
        brief = MissionBrief(selector="greet", args=["name"], intent="greet someone by name",
                             examples=[[["ann"], "hello ann"]])
        results: dict[str, dict] = {}

        def run(label: str, k) -> None:
            k.kernel.psm.models = Together(plan={"queries": ["greet"], "examples": []}, methods=[method(label)])
            results[label] = k.loop.run_until_complete(k.kernel.run_cycle("genesis_obj", brief))
        threads = [threading.Thread(target=run, args=(label, k)) for label, k in (("A", ka), ("B", kb))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert {r["state"] for r in results.values()} == {"COMPLETE"}, results
        # one method: both cycles report the source that is installed
        assert results["A"]["source"] == results["B"]["source"]
        winner = "A" if "written by A" in results["A"]["source"] else "B"
        with ka.image.reading() as s:
            assert s.get("genesis_obj")._slots["greet"].source == results[winner]["source"]
            recorded = [c for c in s.root["cycles"].values() if c["selector"] == "greet"]
        assert len(recorded) == 1          # only the installing cycle is recorded
        assert ka.send("genesis_obj", "greet", "bo") == kb.send("genesis_obj", "greet", "bo") == "hello bo"
    finally:
        ka.close()
        kb.close()
    loser = "in-b" if winner == "A" else "in-a"
    log = (tmp_path / loser / f"metacognition-{loser}.jsonl").read_text().splitlines()
    adopted = [json.loads(x) for x in log if '"adopted"' in x]
    assert adopted and adopted[0]["state"] == "COMPLETE" and adopted[0]["adopted"]["origin"] == "cycle"


# ---------------------------------------------------------------- models' blobs

def _image(settings):
    from batos import genesis
    from batos.image import Image
    image = Image.open(settings)
    image.bootstrap(genesis.incarnate)
    return image


def _blobs_are_shared(tmp_path: Path, uri: str) -> None:
    """A model stored as a blob through one kernel's image is read through another's."""
    from batos.llm.manager import sha256_file
    data = tmp_path / "model.gguf"
    data.write_bytes(os.urandom(300_000))
    sha = sha256_file(data)
    one = _image(config.load({"BATOS_HOME": str(tmp_path / "one"), "BATOS_DB_URI": uri}))
    two = _image(config.load({"BATOS_HOME": str(tmp_path / "two"), "BATOS_DB_URI": uri}))
    try:
        def store(s):
            manager = s.root["models"]
            manager.add_model("test", manager.store_file(data, sha, "gguf", str(data), Path(one.blob_dir)))
        one.transact(store)
        with two.reading() as s:
            path = s.root["models"].models[sha].blob.committed()
        assert Path(path).read_bytes() == data.read_bytes()
        assert not Path(path).is_relative_to(tmp_path / "one")   # two's own copy (cache)
    finally:
        one.close()
        two.close()


@pytest.mark.process
@pytest.mark.parametrize("shared_dir", [False, True], ids=["through-zeo", "shared-blob-dir"])
def test_model_blobs_are_shared_through_zeo(zeo, tmp_path, shared_dir):
    """Through ZEO into each kernel's blob cache, or read from the server's own blob
    directory (shared_blob_dir, the same file system)."""
    uri = zeo.uri + (f"?shared_blob_dir=true&blob_dir={zeo.home / 'live_image.fs.blob'}" if shared_dir else "")
    _blobs_are_shared(tmp_path, uri)


# ---------------------------------------------------------------- the watchdog

@pytest.mark.process
def test_the_watchdog_supervises_a_kernel_on_a_zeo_image(tmp_path):
    """In the ZEO server's home: restart after kill -9, and an upgrade backed up with repozo
    (the shared image is not rolled back when the upgrade fails; the report says how)."""
    from tests.test_watchdog import Watchdog, alive
    home = tmp_path / "home"
    server = ZeoServer(home).start()
    dog = Watchdog(home, {"BATOS_DB_URI": server.uri, "BATOS_KERNEL_NAME": "watched"})
    try:
        first = dog.ping()
        dog.call("install_method", target_oid="genesis_obj", selector="bump", source=BUMP)
        assert dog.call("send_message", target_oid="genesis_obj", selector="bump")["value"] == 1
        os.kill(first["pid"], signal.SIGKILL)
        second = dog.ping(not_pid=first["pid"])
        assert not alive(first["pid"])
        assert dog.call("send_message", target_oid="genesis_obj", selector="bump")["value"] == 2

        def upgrade(inst_id: str, steps: list) -> dict:
            tmp = home / "upd.tmp"
            tmp.write_text(json.dumps({"id": inst_id, "steps": steps}))
            os.replace(tmp, home / "update_instructions.json")
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                reports = list((home / "upgrades").glob(f"{inst_id}.*.report.json")) \
                    if (home / "upgrades").exists() else []
                if reports:
                    return json.loads(reports[0].read_text())
                time.sleep(0.2)
            raise AssertionError(f"no report for {inst_id}:\n{dog.log()}")

        applied = upgrade("zeo-ok", [["python", "-c", "pass"]])
        assert applied["outcome"] == "applied", applied
        saved = Path(applied["backup"])
        assert list((saved / "repozo").glob("*.fs")), applied        # repozo's full backup
        dog.ping(not_pid=second["pid"])
        assert dog.call("send_message", target_oid="genesis_obj", selector="bump")["value"] == 3
        failed = upgrade("zeo-bad", [["python", "-c", "raise SystemExit(3)"]])
        assert failed["outcome"] == "failed" and failed["rolled_back"], failed
        assert "repozo -R" in failed["image_not_restored"]
        assert dog.call("send_message", target_oid="genesis_obj", selector="bump")["value"] == 4
    finally:
        dog.stop()
        server.stop()


# ---------------------------------------------------------------- PostgreSQL

@pytest.mark.process
def test_two_kernels_on_postgresql_lose_no_update_and_see_each_others_methods(pg_cluster, kernels):
    a, b = two_kernels_share_one_image(kernels, pg_cluster.new_database())
    deadline = time.monotonic() + 10
    while not any(e.get("event") == "install" for e in events(a)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(e.get("event") == "install" for e in events(a))


@pytest.mark.process
def test_model_blobs_are_shared_through_postgresql(pg_cluster, tmp_path):
    _blobs_are_shared(tmp_path, pg_cluster.new_database())


@pytest.mark.process
def test_a_postgresql_image_is_backed_up_with_pg_dump(pg_cluster, tmp_path, monkeypatch):
    from watchdog import upgrade
    settings = config.load({"BATOS_HOME": str(tmp_path), "BATOS_DB_URI": pg_cluster.new_database()})
    _image(settings).close()
    monkeypatch.setenv("PATH", f"{pg_cluster.bindir}:{os.environ.get('PATH', '')}")   # the server's version
    saved = upgrade.backup(settings, tmp_path / "backup")
    assert (saved / "image.pgdump").stat().st_size > 0
    assert "pg_restore --clean" in upgrade.restore(settings, saved)
