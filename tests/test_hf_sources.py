"""hf: sources on a real Hugging Face cache layout (blobs plus symlinked snapshots), with
HF_HUB_OFFLINE=1: a transformers model stored as a blob of real files (not links), one GGUF
picked out of a repository of several, a broken record from an older version repaired, and
the seeds' line-up failing clearly when its models are not there."""
import json
import os
import shutil
import tarfile

import pytest

from batos.llm import GenerationError, Models
from batos.llm.embedded import smollm2_gguf
from batos.llm.manager import ModelUnavailable, parse_hf, tar_directory
from tests.hfcache import add_model_dir, add_repo
from tests.test_models import MSGS, make_tiny_model, open_image

pytestmark = pytest.mark.model


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline Hub cache for this process (huggingface_hub reads both at import)."""
    import huggingface_hub.constants as constants
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hf_specs_are_parsed_and_bad_ones_refused():
    assert parse_hf("hf:org/name") == ("org/name", None, None)
    assert parse_hf("hf:org/name@v1.0:model.Q4_K_M.gguf") == ("org/name", "v1.0", "model.Q4_K_M.gguf")
    assert parse_hf("org/name:file.gguf") == ("org/name", None, "file.gguf")
    for bad in ("hf:justname", "hf:/x", "hf:a/b/c"):
        with pytest.raises(ModelUnavailable, match="hf:ORG/NAME"):
            parse_hf(bad)


def test_a_snapshot_of_links_is_archived_as_files(tmp_path):
    snap = add_repo(tmp_path / "hub", "org/m", {"config.json": b"{}", "sub/w.bin": b"weights"})
    assert os.path.islink(snap / "config.json")
    sha = tar_directory(snap, tmp_path / "m.tar")
    with tarfile.open(tmp_path / "m.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"config.json", "sub/w.bin"}
        assert all(m.isfile() for m in members.values())
        assert tar.extractfile("sub/w.bin").read() == b"weights"
    assert len(sha) == 64
    os.unlink(snap / "config.json")
    os.symlink("../../blobs/nothing-here", snap / "config.json")   # a dangling link
    with pytest.raises(ModelUnavailable, match="link to nothing"):
        tar_directory(snap, tmp_path / "m2.tar")


def test_a_transformers_model_from_the_hub_cache_is_stored_and_reloaded_from_its_blob(tmp_path, hub):
    tiny = make_tiny_model(tmp_path / "tiny", 3)
    add_model_dir(hub, "batos-test/tiny-llama", tiny)
    env = {"BATOS_PERSONA_MODELS": '{"ROBIN": "hf:batos-test/tiny-llama"}'}
    settings, image = open_image(tmp_path / "home", **env)
    try:
        models = Models(settings, image)
        assert models.complete("ROBIN", MSGS, 4).completion_tokens >= 1
        sha, kind, path = models.resolve("hf:batos-test/tiny-llama")
        assert kind == "transformers" and not any(p.is_symlink() for p in path.rglob("*"))
        models.close()
    finally:
        image.close()
    shutil.rmtree(hub)                                      # the Hub cache is gone
    shutil.rmtree(settings.HOME / "model_cache")            # and so is the extracted copy
    settings, image = open_image(tmp_path / "home", **env)
    try:
        models = Models(settings, image)
        assert models.complete("ROBIN", MSGS, 4).completion_tokens >= 1   # from the image's blob
        assert models.resolve("hf:batos-test/tiny-llama")[0] == sha
        models.close()
    finally:
        image.close()


def test_one_gguf_is_picked_from_a_repository_of_several(tmp_path, hub):
    add_repo(hub, "batos-test/smol-gguf", {"smol.Q4_1.gguf": smollm2_gguf(),
                                           "smol.Q8_0.gguf": b"GGUF another quantisation",
                                           "README.md": b"# two quantisations"})
    settings, image = open_image(tmp_path / "home", BATOS_PERSONA_MODELS=json.dumps({
        "BRICK": "hf:batos-test/smol-gguf:smol.Q4_1.gguf", "BABS": "hf:batos-test/smol-gguf"}))
    try:
        models = Models(settings, image)
        gen = models.complete("BRICK", MSGS, 6)
        assert gen.completion_tokens >= 1
        sha, kind, _ = models.resolve("hf:batos-test/smol-gguf:smol.Q4_1.gguf")
        assert kind == "gguf"
        with pytest.raises(GenerationError) as info:
            models.complete("BABS", MSGS, 4)
        message = str(info.value)
        assert "BABS" in message and "2 GGUF files" in message and "smol.Q8_0.gguf" in message
        assert "hf:batos-test/smol-gguf:FILE" in message
        with image.reading() as s:      # the failure stored nothing for BABS
            assert "hf:batos-test/smol-gguf" not in s.root["models"].sources
        models.close()
    finally:
        image.close()


def test_a_broken_record_left_by_an_older_version_is_replaced(tmp_path, hub):
    tiny = make_tiny_model(tmp_path / "tiny", 4)
    snap = add_model_dir(hub, "batos-test/tiny-old", tiny)
    source = "hf:batos-test/tiny-old"
    settings, image = open_image(tmp_path / "home", BATOS_PERSONA_MODELS=json.dumps({"ROBIN": source}))
    try:
        # what the older version stored: a tar of the snapshot's links, not their files
        old_tar = tmp_path / "old.tar"
        with tarfile.open(old_tar, "w") as tar:
            for p in sorted(snap.iterdir()):
                tar.add(str(p), arcname=p.name)
        from batos.llm.manager import sha256_file
        old_sha = sha256_file(old_tar)

        def store(s):
            manager = s.root["models"]
            manager.add_model(source, manager.store_file(old_tar, old_sha, "transformers", source,
                                                         tmp_path / "home" / "live_image.fs.blob"))
        image.transact(store)
        events = []
        models = Models(settings, image, emit=events.append)
        assert models.complete("ROBIN", MSGS, 4).completion_tokens >= 1
        assert [e["sha256"] for e in events if e["event"] == "model_repaired"] == [old_sha]
        with image.reading() as s:
            assert s.root["models"].sources[source] != old_sha and old_sha not in s.root["models"].models
        models.close()
    finally:
        image.close()


@pytest.mark.process
def test_the_kernel_loads_an_hf_model_stores_it_and_reloads_it_after_a_restart(make_kernel, tmp_path):
    tiny = make_tiny_model(tmp_path / "tiny", 5)
    hf_home = tmp_path / "hf"
    add_model_dir(hf_home / "hub", "batos-test/tiny-kernel", tiny)
    source = "hf:batos-test/tiny-kernel"
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "BATOS_CYCLE_RETRIES": "0",
           "BATOS_PERSONA_MODELS": json.dumps({p: source for p in ("ALFRED", "BRICK", "ROBIN", "BABS")}),
           "BATOS_METHOD_MAX_TOKENS": "8", "BATOS_PLAN_MAX_TOKENS": "8"}
    brief = {"type": "unhandled_message", "selector": "noop_method", "args": [], "intent": "do nothing"}
    k = make_kernel(env)
    with k.connect(timeout_s=300) as c:
        c.request({"command": "initiate_cognitive_cycle", "target_oid": "genesis_obj", "mission_brief": brief})
    events = k.wait_events(lambda ev: any(e["event"] == "cycle_end" for e in ev))
    stored = [e for e in events if e["event"] == "model_stored"]
    assert [e["source"] for e in stored] == [source] and stored[0]["kind"] == "transformers"
    assert any(e["event"] == "model_swap" for e in events)
    k.stop()
    shutil.rmtree(hf_home)          # the restarted kernel has only its image
    k.start()
    with k.connect(timeout_s=300) as c:
        c.request({"command": "initiate_cognitive_cycle", "target_oid": "genesis_obj", "mission_brief": brief})
        assert c.call("ping")["pong"] is True
    events = k.wait_events(lambda ev: sum(e["event"] == "cycle_end" for e in ev) >= 2)
    second = events[[i for i, e in enumerate(events) if e["event"] == "kernel_start"][-1]:]
    assert not [e for e in second if e["event"] == "model_stored"]
    assert [e for e in second if e["event"] == "model_swap"][0]["sha256"] == stored[0]["sha256"]


@pytest.mark.process
def test_the_seeds_line_up_offline_names_the_missing_model_and_the_kernel_keeps_serving(make_kernel, tmp_path):
    k = make_kernel({"BATOS_PERSONA_MODELS": "seeds", "HF_HOME": str(tmp_path / "empty-hf"),
                     "HF_HUB_OFFLINE": "1"})
    brief = {"type": "unhandled_message", "selector": "say_hi", "args": [], "intent": "say hi"}
    with k.connect(timeout_s=120) as c:
        reply = c.request({"command": "initiate_cognitive_cycle", "target_oid": "genesis_obj",
                           "mission_brief": brief})
        assert c.call("ping")["pong"] is True
    result = reply["result"] if reply.get("ok") else reply["error"]
    text = json.dumps(result)
    # DECOMPOSING is BRICK's: the cycle fails there, naming BRICK's model and how to get it
    assert "BRICK's model hf:codellama/CodeLlama-7b-Instruct-hf" in text
    assert "hf download codellama/CodeLlama-7b-Instruct-hf" in text
    assert "HF_HUB_OFFLINE" in text
    warned = k.wait_events(lambda ev: any(e["event"] == "model_missing" for e in ev))
    missing = {e["persona"]: e for e in warned if e["event"] == "model_missing"}
    assert set(missing) == {"ALFRED", "BRICK", "ROBIN", "BABS"}
    assert "google/gemma-2b-it" in missing["BABS"]["message"]
