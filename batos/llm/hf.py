"""The transformers backend: a local Hugging Face model directory, with LoRA adapters.

Models load through accelerate (``device_map="auto"``, ``low_cpu_mem_usage``, a
``max_memory`` derived from ``MODEL_MEMORY_BUDGET_MB``).  On CUDA the weights are
quantized to 4-bit NF4 by bitsandbytes (``BitsAndBytesConfig``, bfloat16 compute
where the GPU has it, else float16); on the CPU they load in
``TRANSFORMERS_CPU_DTYPE`` (float32 by default: bfloat16 halves the memory, but
most CPUs compute it slower).  This backend cannot constrain decoding with a
grammar: a JSON schema becomes an instruction in the prompt, and the caller
validates what comes back (the cycle already does).
"""
from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from batos.llm.base import Generation, GenerationError, code_block_closed


def quantization_config(cuda_bf16: bool) -> Any:
    """The 4-bit configuration a CUDA load uses (NF4, double quantization)."""
    import torch
    from transformers import BitsAndBytesConfig
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16 if cuda_bf16 else torch.float16)


def load_kwargs(*, cuda: bool, memory_budget_mb: float, cpu_dtype: str = "float32",
                cuda_bf16: bool = False, model_mb: float = 0.0) -> dict:
    """``from_pretrained`` keyword arguments: accelerate's placement within the budget,
    4-bit on CUDA, ``cpu_dtype`` on the CPU.  ``model_mb`` is the weights' size on disk:
    on the CPU a budget below it would leave layers on the meta device, so the CPU is
    always given room for the whole model (the ModelManager keeps the budget across
    models by unloading the least recently used)."""
    import psutil
    import torch
    kwargs: dict[str, Any] = {"local_files_only": True, "low_cpu_mem_usage": True, "device_map": "auto"}
    host_mb = psutil.virtual_memory().available / (1 << 20)
    if cuda:
        # the GPU takes the budget; what does not fit stays in host memory
        kwargs["max_memory"] = {0: f"{int(memory_budget_mb)}MiB", "cpu": f"{int(host_mb)}MiB"}
        kwargs["quantization_config"] = quantization_config(cuda_bf16)
    else:
        cpu_mb = max(memory_budget_mb, model_mb * 1.25 + 64)
        kwargs["max_memory"] = {"cpu": f"{int(cpu_mb)}MiB"}
        kwargs["dtype"] = getattr(torch, cpu_dtype)
    return kwargs


class TransformersBackend:
    kind = "transformers"

    def __init__(self, path: Path, *, seed: int, memory_budget_mb: float = 6000.0,
                 cpu_dtype: str = "float32"):
        self.path = path
        self.seed = seed
        self.memory_budget_mb = memory_budget_mb
        self.cpu_dtype = cpu_dtype
        self.model: Any = None
        self.tokenizer: Any = None
        self.adapters: dict[str, Path] = {}     # {adapter name -> directory} loaded into the model
        self.active_adapter: str | None = None
        self._lock = threading.Lock()
        self.load_seconds = 0.0

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self.model is not None:
            return
        t0 = time.monotonic()
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            cuda = torch.cuda.is_available()
            model_mb = sum(p.stat().st_size for p in self.path.rglob("*")
                           if p.suffix in (".safetensors", ".bin")) / (1 << 20)
            kwargs = load_kwargs(cuda=cuda, memory_budget_mb=self.memory_budget_mb,
                                 cpu_dtype=self.cpu_dtype, model_mb=model_mb,
                                 cuda_bf16=cuda and torch.cuda.is_bf16_supported())
            self.model = AutoModelForCausalLM.from_pretrained(str(self.path), **kwargs)
            self.model.eval()
        except Exception as exc:
            self.model = self.tokenizer = None
            raise GenerationError(f"transformers could not load {self.path}: {type(exc).__name__}: {exc}") from exc
        self.load_seconds = time.monotonic() - t0

    def unload(self) -> None:
        with self._lock:
            self.model = self.tokenizer = None
            self.adapters.clear()
            self.active_adapter = None
        gc.collect()
        try:
            import torch
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def use_adapter(self, name: str | None, path: Path | None = None) -> None:
        """Make a LoRA adapter active (loading it the first time), or none."""
        with self._lock:
            self._load_locked()
            self._use_adapter_locked(name, path)

    def _use_adapter_locked(self, name: str | None, path: Path | None) -> None:
        if name == self.active_adapter:
            return
        from peft import PeftModel
        if name is None:
            if isinstance(self.model, PeftModel):
                self.model.base_model.disable_adapter_layers()
            self.active_adapter = None
            return
        if name not in self.adapters:
            if path is None:
                raise GenerationError(f"the LoRA adapter {name!r} is not loaded and no path was given")
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(path), adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            except Exception as exc:
                raise GenerationError(f"the LoRA adapter {name!r} does not fit {self.path.name}: {exc}") from exc
            self.model.eval()
            self.adapters[name] = path
        self.model.base_model.enable_adapter_layers()
        self.model.set_adapter(name)
        self.active_adapter = name

    def _prompt(self, messages: list[dict], schema: dict | None) -> str:
        if schema is not None:
            messages = messages[:-1] + [{
                "role": messages[-1]["role"],
                "content": messages[-1]["content"] + "\nAnswer with JSON only, matching this schema: "
                + json.dumps(schema)}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        lines = [f"{m['role']}: {m['content']}" for m in messages]
        return "\n".join(lines) + "\nassistant:"

    def chat(self, messages: list[dict], *, max_tokens: int, temperature: float,
             schema: dict | None = None, cancel: threading.Event | None = None,
             seed: int | None = None, stop_after_code: bool = False) -> Generation:
        with self._lock:
            self._load_locked()
            prompt = self._prompt(messages, schema)
            text, n_prompt, n_new, seconds = self._generate(
                prompt, max_tokens, temperature, seed, cancel,
                code_block_closed if stop_after_code else None)
        finish = "cancelled" if cancel is not None and cancel.is_set() else (
            "length" if n_new >= max_tokens else "stop")
        return Generation(text=text, prompt_tokens=n_prompt, completion_tokens=n_new,
                          seconds=seconds, finish_reason=finish, model=self.path.name)

    def complete_text(self, prompt: str, *, max_tokens: int, temperature: float,
                      cancel: threading.Event | None = None, seed: int | None = None,
                      stop: list[str] | None = None) -> Generation:
        """Plain completion of ``prompt`` (no chat template); ``stop`` strings end it."""
        stops = list(stop or [])
        with self._lock:
            self._load_locked()
            text, n_prompt, n_new, seconds = self._generate(
                prompt, max_tokens, temperature, seed, cancel,
                (lambda t: any(s in t for s in stops)) if stops else None)
        cut = min((text.index(s) for s in stops if s in text), default=None)
        finish = "cancelled" if cancel is not None and cancel.is_set() else (
            "stop" if cut is not None or n_new < max_tokens else "length")
        return Generation(text=text if cut is None else text[:cut], prompt_tokens=n_prompt,
                          completion_tokens=n_new, seconds=seconds, finish_reason=finish,
                          model=self.path.name)

    def _generate(self, prompt: str, max_tokens: int, temperature: float, seed: int | None,
                  cancel: threading.Event | None,
                  done: Callable[[str], bool] | None) -> tuple[str, int, int, float]:
        """One generation (the lock held): the new text, prompt and new token counts and
        seconds; it ends at ``cancel`` or when ``done`` holds for the text so far."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        tokenizer = self.tokenizer
        inputs = tokenizer(prompt, return_tensors="pt").to(self.model.device)
        n_prompt = int(inputs["input_ids"].shape[1])

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                if cancel is not None and cancel.is_set():
                    return True
                return bool(done is not None and done(
                    tokenizer.decode(input_ids[0][n_prompt:], skip_special_tokens=True)))

        torch.manual_seed(self.seed if seed is None else seed)
        t0 = time.monotonic()
        try:
            with torch.no_grad():
                out = self.model.generate(
                    **inputs, max_new_tokens=max_tokens, do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                    stopping_criteria=StoppingCriteriaList([_Stop()]))
        except Exception as exc:
            raise GenerationError(f"transformers failed to generate: {type(exc).__name__}: {exc}") from exc
        new = out[0][n_prompt:]
        return (tokenizer.decode(new, skip_special_tokens=True), n_prompt, int(len(new)),
                time.monotonic() - t0)
