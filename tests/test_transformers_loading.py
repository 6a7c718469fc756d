"""How transformers models load: accelerate's placement within the memory budget, 4-bit
bitsandbytes on CUDA (built and accepted here, where only a CPU is), a chosen dtype on the
CPU, and GPU offload for llama.cpp only where the build can do it."""

import pytest

import config
from batos.llm import Models
from batos.llm.hf import load_kwargs
from batos.llm.llama import gpu_layers
from tests.test_models import MSGS, make_tiny_model, open_image


def test_the_cuda_load_asks_for_4bit_nf4_within_the_budget_and_transformers_accepts_it():
    import bitsandbytes  # noqa: F401  - installed, and importable without a GPU
    import torch
    from transformers import BitsAndBytesConfig
    from transformers.quantizers import AutoHfQuantizer
    kwargs = load_kwargs(cuda=True, memory_budget_mb=6000, cuda_bf16=True)
    quant = kwargs["quantization_config"]
    assert isinstance(quant, BitsAndBytesConfig)
    assert quant.load_in_4bit and not quant.load_in_8bit
    assert quant.bnb_4bit_quant_type == "nf4" and quant.bnb_4bit_compute_dtype == torch.bfloat16
    assert kwargs["device_map"] == "auto" and kwargs["low_cpu_mem_usage"] is True
    assert kwargs["max_memory"][0] == "6000MiB" and int(kwargs["max_memory"]["cpu"][:-3]) > 0
    # transformers turns it into its bitsandbytes quantizer, as it would on a GPU
    quantizer = AutoHfQuantizer.from_config(BitsAndBytesConfig.from_dict(quant.to_dict()))
    assert type(quantizer).__name__ == "Bnb4BitHfQuantizer"
    assert load_kwargs(cuda=True, memory_budget_mb=6000)["quantization_config"].bnb_4bit_compute_dtype \
        == torch.float16          # GPUs without bfloat16 compute in float16
    cpu = load_kwargs(cuda=False, memory_budget_mb=2000, cpu_dtype="bfloat16")
    assert "quantization_config" not in cpu and cpu["dtype"] == torch.bfloat16
    assert cpu["max_memory"] == {"cpu": "2000MiB"}
    # a budget below the model's size would leave layers on the meta device: never
    assert load_kwargs(cuda=False, memory_budget_mb=1, model_mb=300)["max_memory"] == {"cpu": "439MiB"}


@pytest.mark.model
def test_a_cpu_load_is_placed_automatically_in_the_configured_dtype(tmp_path):
    import torch
    tiny = make_tiny_model(tmp_path / "tiny", 7)
    for dtype, torch_dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        settings, image = open_image(tmp_path / f"home-{dtype}", BATOS_TRANSFORMERS_CPU_DTYPE=dtype,
                                     BATOS_PERSONA_MODELS=f'{{"ROBIN": "{tiny}"}}')
        try:
            models = Models(settings, image)
            assert models.complete("ROBIN", MSGS, 4).completion_tokens >= 1
            model = models.backend_for("ROBIN").model
            assert model.dtype == torch_dtype
            assert {p.device.type for p in model.parameters()} == {"cpu"}   # where device_map="auto" put it
            models.close()
        finally:
            image.close()


def test_gpu_layers_are_all_only_where_the_build_can_offload():
    from llama_cpp import llama_supports_gpu_offload
    assert gpu_layers(-1) == (-1 if llama_supports_gpu_offload() else 0)
    assert gpu_layers(0) == 0 and gpu_layers(12) == 12


def test_the_seeds_line_up_and_the_new_settings(tmp_path):
    s = config.load({"BATOS_PERSONA_MODELS": "seeds"})
    assert s.PERSONA_MODELS == {"ALFRED": "hf:meta-llama/Meta-Llama-3-8B-Instruct",
                                "BRICK": "hf:codellama/CodeLlama-7b-Instruct-hf",
                                "ROBIN": "hf:mistralai/Mistral-7B-Instruct-v0.2",
                                "BABS": "hf:google/gemma-2b-it"}
    assert config.load({}).LLM_N_GPU_LAYERS == -1
    assert config.load({"BATOS_LLM_N_GPU_LAYERS": "20"}).LLM_N_GPU_LAYERS == 20
    for env, needle in (({"BATOS_LLM_N_GPU_LAYERS": "-2"}, "LLM_N_GPU_LAYERS"),
                        ({"BATOS_TRANSFORMERS_CPU_DTYPE": "int3"}, "TRANSFORMERS_CPU_DTYPE"),
                        ({"BATOS_PERSONA_MODELS": "seedz"}, '"seeds"')):
        with pytest.raises(config.ConfigError, match=needle):
            config.load(env)
