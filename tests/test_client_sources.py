"""Where the client's parser model comes from, without loading one."""
import pytest

from client.translator import ParserModelUnavailable, find_parser_model


def test_hub_parser_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_PARSER_REPO_ID", "nobody-here/no-such-gguf")
    monkeypatch.setenv("HF_PARSER_FILENAME", "model.gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ParserModelUnavailable, match="cannot get model.gguf from nobody-here/no-such-gguf"):
        find_parser_model()


def test_llama_model_path_still_works_with_a_deprecation_notice(monkeypatch, tmp_path):
    gguf = tmp_path / "parser.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.delenv("HF_PARSER_REPO_ID", raising=False)
    monkeypatch.setenv("LLAMA_MODEL_PATH", str(gguf))
    notes = []
    assert find_parser_model("/kernel/copy.gguf", notes.append) == gguf
    assert "deprecated" in notes[0]
    monkeypatch.setenv("LLAMA_MODEL_PATH", str(tmp_path / "missing.gguf"))
    with pytest.raises(ParserModelUnavailable, match="does not exist"):
        find_parser_model(None, notes.append)


def test_kernel_copy_is_preferred_to_the_embedded_model(monkeypatch, tmp_path):
    kernel_copy = tmp_path / "blob.gguf"
    kernel_copy.write_bytes(b"GGUF")
    for var in ("HF_PARSER_REPO_ID", "HF_PARSER_FILENAME", "LLAMA_MODEL_PATH"):
        monkeypatch.delenv(var, raising=False)
    assert find_parser_model(str(kernel_copy)) == kernel_copy
