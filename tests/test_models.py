"""The ModelManager on the real code paths: transformers models built in the test,
stored as blobs, reloaded from them, swapped, given a LoRA adapter trained for a
step; GGUF models through llama.cpp."""
import os
import shutil

import pytest

import config
from batos import genesis
from batos.image import Image
from batos.llm import GenerationError, Models
from batos.llm.embedded import smollm2_gguf

pytestmark = pytest.mark.model
MSGS = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]


def make_tiny_model(directory, seed):
    """A real (tiny, random) Llama model and a BPE tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    corpus = ["hello world", "the kernel keeps the living image", "bat os personas write methods"] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("tiny")
    return make_tiny_model(base / "tiny_a", 1), make_tiny_model(base / "tiny_b", 2)


def open_image(home, **env):
    settings = config.load({"BATOS_HOME": str(home), **env})
    image = Image.open(settings)
    image.bootstrap(genesis.incarnate)
    return settings, image


def test_transformers_model_is_stored_once_reloaded_from_its_blob_and_swapped(tmp_path, tiny_models):
    a, b = (shutil.copytree(m, tmp_path / m.name) for m in tiny_models)
    personas = f'{{"ROBIN": "{a}", "BABS": "{b}"}}'
    size_mb = max(sum(f.stat().st_size for f in m.glob("*.safetensors")) for m in (a, b)) / (1 << 20)
    env = {"BATOS_PERSONA_MODELS": personas, "BATOS_MODEL_MEMORY_BUDGET_MB": str(size_mb * 1.5)}
    settings, image = open_image(tmp_path / "home", **env)
    events = []
    try:
        models = Models(settings, image, emit=events.append)
        gen = models.complete("ROBIN", MSGS, 8)
        assert isinstance(gen.text, str) and gen.completion_tokens >= 1
        # a plain completion (the code-completion candidates), no chat template: greedy is
        # repeatable, and a stop string ends the text without being part of it
        plain = models.complete_text("ROBIN", "def add(a, b):\n", 12, temperature=0.0)
        assert plain.completion_tokens >= 1 and plain.prompt_tokens >= 3
        assert models.complete_text("ROBIN", "def add(a, b):\n", 12, temperature=0.0).text == plain.text
        assert len(plain.text) > 2, plain
        stop = plain.text[1:3]
        cut = models.complete_text("ROBIN", "def add(a, b):\n", 12, temperature=0.0, stop=[stop])
        assert cut.text == plain.text[:plain.text.index(stop)] and cut.finish_reason == "stop"
        with image.reading() as s:
            manager = s.root["models"]
            sha = manager.sources[str(a)]
            record = manager.models[sha]
            assert record.kind == "transformers"
            assert os.path.exists(record.blob.committed())
        assert models.resident == [sha]
        # the second persona's model does not fit beside the first: a swap
        models.complete("BABS", MSGS, 8)
        swaps = [e for e in events if e["event"] == "model_swap"]
        assert swaps[-1]["unloaded"] == [sha] and len(models.resident) == 1
        assert all(e["load_s"] >= 0 and "swap_s" in e for e in swaps)
        models.close()
    finally:
        image.close()
    # the source directory is gone: the model now comes from the image's blob
    shutil.rmtree(a)
    settings, image = open_image(tmp_path / "home", **env)
    try:
        models = Models(settings, image)
        assert models.complete("ROBIN", MSGS, 4).completion_tokens >= 1
        sha_again, kind, path = models.resolve(str(a))
        assert sha_again == sha and kind == "transformers"
        assert path == settings.HOME / "model_cache" / sha   # extracted where it is loaded from
        models.close()
    finally:
        image.close()


def test_lora_adapter_trained_for_a_step_is_ingested_and_changes_the_model(tmp_path, tiny_models):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    a = tiny_models[0]
    staging = tmp_path / "home" / "lora_adapters"
    base = AutoModelForCausalLM.from_pretrained(str(a), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(a), local_files_only=True)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    batch = tok(["bat os personas write methods"], return_tensors="pt")
    optim = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=1.0)
    loss = peft_model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    optim.step()
    peft_model.save_pretrained(staging / "tone")

    settings, image = open_image(tmp_path / "home", BATOS_PERSONA_MODELS=f'{{"ROBIN": "{a}"}}')
    try:
        models = Models(settings, image)
        adapters = models.ingest_loras(persona="ROBIN")
        assert [x["name"] for x in adapters] == ["tone"] and adapters[0]["peft_type"] == "LORA"
        assert models.lora_for("ROBIN") == "tone"
        gen = models.complete("ROBIN", MSGS, 6)
        assert gen.completion_tokens >= 1
        backend = models.backend_for("ROBIN")
        assert backend.active_adapter == "tone"
        ids = backend.tokenizer("hello world", return_tensors="pt")
        with torch.no_grad():
            with_lora = backend.model(**ids).logits
            with backend.model.disable_adapter():
                without = backend.model(**ids).logits
        assert not torch.allclose(with_lora, without)       # the trained step is in effect
        models.close()
    finally:
        image.close()


def test_gguf_is_hard_linked_into_the_image_and_generates(tmp_path):
    settings, image = open_image(tmp_path / "home", BATOS_PERSONA_MODELS='{"BRICK": "smollm2"}')
    try:
        models = Models(settings, image)
        gen = models.complete("BRICK", MSGS, 8)
        assert gen.text and gen.model.endswith(".blob")
        sha, kind, path = models.resolve("smollm2")
        assert kind == "gguf" and os.stat(path).st_ino == os.stat(smollm2_gguf()).st_ino
        schema = {"type": "object", "properties": {"queries": {"type": "array", "items": {"type": "string"},
                                                              "maxItems": 2}}, "required": ["queries"]}
        import json
        assert "queries" in json.loads(models.complete("BRICK", MSGS, 40, grammar=schema).text)
        models.close()
    finally:
        image.close()


def test_unreachable_sources_and_misfit_adapters_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings, image = open_image(tmp_path / "home", BATOS_PERSONA_MODELS=(
        '{"BABS": "hf:nobody-here/no-such-model@main", "ROBIN": "/no/such/model.gguf", "BRICK": "smollm2"}'))
    try:
        models = Models(settings, image)
        with pytest.raises(GenerationError, match="HF_HUB_OFFLINE"):
            models.complete("BABS", MSGS, 4)
        with pytest.raises(GenerationError, match="does not exist|unknown model source"):
            models.complete("ROBIN", MSGS, 4)
        with pytest.raises(Exception, match="no LoRA adapter is staged"):
            models.ingest_loras()
        image.transact(lambda s: s.root["models"].persona_loras.__setitem__("BRICK", "tone"))
        with pytest.raises(GenerationError, match="need a transformers model"):
            models.complete("BRICK", MSGS, 4)
        models.close()
    finally:
        image.close()


@pytest.mark.process
def test_kernel_serves_the_parser_model_and_lora_commands(kernel):
    from batos.llm.embedded import EMBEDDED_SHA256
    with kernel.connect(timeout_s=120) as c:
        r = c.call("get_parser_model")
        assert r["sha256"] == EMBEDDED_SHA256 and os.path.isfile(r["path"]) and r["kind"] == "gguf"
        reply = c.request({"command": "ingest_lora"})
        assert reply["error"]["type"] == "BadRequest" and "staged" in reply["error"]["message"]
        reply = c.request({"command": "ingest_lora", "persona": "JOKER"})
        assert reply["error"]["type"] == "BadRequest"
