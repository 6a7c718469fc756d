"""The transformers backend: a local Hugging Face model directory, with LoRA adapters.

On CUDA the model loads 4-bit (``BitsAndBytesConfig``) with ``device_map="auto"``;
on the CPU in plain float32.  This backend cannot constrain decoding with a
grammar: a JSON schema becomes an instruction in the prompt, and the caller
validates what comes back (the cycle already does).
"""
from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path
from typing import Any

from batos.llm.base import Generation, GenerationError


class TransformersBackend:
    kind = "transformers"

    def __init__(self, path: Path, *, seed: int):
        self.path = path
        self.seed = seed
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
            if torch.cuda.is_available():
                from transformers import BitsAndBytesConfig
                quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16)
                self.model = AutoModelForCausalLM.from_pretrained(
                    str(self.path), local_files_only=True, quantization_config=quant, device_map="auto")
            else:
                self.model = AutoModelForCausalLM.from_pretrained(
                    str(self.path), local_files_only=True, dtype=torch.float32)
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
             schema: dict | None = None, cancel: threading.Event | None = None) -> Generation:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return bool(cancel is not None and cancel.is_set())

        with self._lock:
            self._load_locked()
            prompt = self._prompt(messages, schema)
            inputs = self.tokenizer(prompt, return_tensors="pt").to(self.model.device)
            torch.manual_seed(self.seed)
            t0 = time.monotonic()
            try:
                with torch.no_grad():
                    out = self.model.generate(
                        **inputs, max_new_tokens=max_tokens, do_sample=temperature > 0,
                        temperature=temperature if temperature > 0 else None,
                        top_p=None, top_k=None,
                        pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                        stopping_criteria=StoppingCriteriaList([_Cancelled()]))
            except Exception as exc:
                raise GenerationError(f"transformers failed to generate: {type(exc).__name__}: {exc}") from exc
            seconds = time.monotonic() - t0
            n_prompt = inputs["input_ids"].shape[1]
            new = out[0][n_prompt:]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "cancelled" if cancel is not None and cancel.is_set() else (
            "length" if len(new) >= max_tokens else "stop")
        return Generation(text=text, prompt_tokens=int(n_prompt), completion_tokens=int(len(new)),
                          seconds=seconds, finish_reason=finish, model=self.path.name)
