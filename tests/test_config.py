"""Settings: defaults, BATOS_<NAME> overrides, BATOS_HOME resolution, and clear errors."""
from pathlib import Path

import pytest

import config


def test_defaults_use_the_seed_names_and_resolve_against_home(tmp_path):
    s = config.load({"BATOS_HOME": str(tmp_path)})
    assert s.HOME == tmp_path.resolve()
    assert s.db_path == tmp_path.resolve() / "live_image.fs"
    assert s.blob_path == tmp_path.resolve() / "live_image.fs.blob"
    assert s.log_path == tmp_path.resolve() / "metacognition.jsonl"
    assert s.ZMQ_ENDPOINT == "tcp://127.0.0.1:5555"
    assert set(s.PERSONA_MODELS) == {"ALFRED", "BRICK", "ROBIN", "BABS"}
    assert s.DEFAULT_PERSONA_MODEL == "ALFRED"
    for name in ("LORA_STAGING_DIR", "SENTENCE_TRANSFORMER_MODEL", "METACOGNITION_LOG_FILE"):
        assert getattr(s, name)


def test_environment_overrides_each_setting(tmp_path):
    s = config.load({
        "BATOS_HOME": str(tmp_path), "BATOS_DB_FILE": "other.fs", "BATOS_METHOD_TIMEOUT_S": "0.5",
        "BATOS_ZMQ_ENDPOINT": "tcp://127.0.0.1:6001", "BATOS_PERSONA_MODELS": '{"BRICK": "smollm2"}',
        "BATOS_METACOGNITION_LOG_FILE": "/abs/log.jsonl",
    })
    assert s.db_path == tmp_path.resolve() / "other.fs"
    assert s.METHOD_TIMEOUT_S == 0.5
    assert s.ZMQ_ENDPOINT == "tcp://127.0.0.1:6001"
    assert s.PERSONA_MODELS["BRICK"] == "smollm2" and s.PERSONA_MODELS["ALFRED"] == "embedded"
    assert s.log_path == Path("/abs/log.jsonl")


@pytest.mark.parametrize("env, needle", [
    ({"BATOS_METHOD_TIMEOUT_S": "soon"}, "BATOS_METHOD_TIMEOUT_S"),
    ({"BATOS_METHOD_TIMEOUT_S": "-1"}, "BATOS_METHOD_TIMEOUT_S"),
    ({"BATOS_CYCLE_WORKERS": "1.5"}, "BATOS_CYCLE_WORKERS"),
    ({"BATOS_ZMQ_ENDPOINT": "tcp://10.0.0.1:5555", "BATOS_CURVE": "0"}, "loopback"),
    ({"BATOS_ZMQ_ENDPOINT": "tcp://0.0.0.0:5555", "BATOS_CURVE": "0"}, "loopback"),
    ({"BATOS_ZMQ_ENDPOINT": "http://127.0.0.1"}, "BATOS_ZMQ_ENDPOINT"),
    ({"BATOS_ZMQ_ENDPOINT": "tcp://127.0.0.1:99999"}, "port"),
    ({"BATOS_PERSONA_MODELS": "not json"}, "BATOS_PERSONA_MODELS"),
    ({"BATOS_PERSONA_MODELS": '{"JOKER": "embedded"}'}, "JOKER"),
    ({"BATOS_DEFAULT_PERSONA_MODEL": "JOKER"}, "BATOS_DEFAULT_PERSONA_MODEL"),
    ({"BATOS_LLM_TEMPERATURE": "9"}, "BATOS_LLM_TEMPERATURE"),
    ({"BATOS_DB_FILE": ""}, "BATOS_DB_FILE"),
    ({"BATOS_PLAN_EXAMPLES": "5"}, "BATOS_PLAN_EXAMPLES"),
    ({"BATOS_PLAN_EXAMPLES": "-1"}, "BATOS_PLAN_EXAMPLES"),
])
def test_bad_values_fail_with_a_message_naming_the_variable(env, needle):
    with pytest.raises(config.ConfigError) as info:
        config.load(env)
    assert needle in str(info.value)


def test_loopback_forms_are_accepted():
    for endpoint in ("tcp://localhost:5555", "tcp://127.0.0.2:5555", "tcp://[::1]:5555", "ipc:///tmp/x"):
        assert config.load({"BATOS_ZMQ_ENDPOINT": endpoint}).ZMQ_ENDPOINT == endpoint


def test_a_non_loopback_endpoint_implies_curve(tmp_path):
    s = config.load({"BATOS_HOME": str(tmp_path), "BATOS_ZMQ_ENDPOINT": "tcp://10.0.0.1:5555"})
    assert s.ZMQ_ENDPOINT == "tcp://10.0.0.1:5555" and s.curve_enabled
