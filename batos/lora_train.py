"""LoRA from the system's own successes: a PEFT adapter trained on mission -> method pairs.

``train(base, pairs, out)`` loads the persona's transformers model, adds LoRA layers to
its attention projections, and trains them for ``steps`` steps (AdamW, one pair per
step, the loss on the method's tokens only), then saves the adapter in PEFT's layout to
``out``.  On this CPU machine the tests train a tiny model in seconds; a 1-3B model on
a GPU takes minutes for a few hundred pairs (and wants ``bf16``; see README).
"""
from __future__ import annotations

from pathlib import Path

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def prompt_of(selector: str, intent: str, args: list[str]) -> str:
    return (f"Write the BAT OS method {selector}(self{''.join(', ' + a for a in args)}). "
            f"{intent}\nAnswer with only the code in one ```python block.")


def train(base: Path, pairs: list[tuple[str, str]], out: Path, *, steps: int = 30, r: int = 8,
          lr: float = 1e-3, seed: int = 0, max_tokens: int = 512) -> dict:
    """Train a LoRA adapter on ``pairs`` of (prompt, answer); returns its figures."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if not pairs:
        raise ValueError("no (mission, method) pairs to train on")
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(base), local_files_only=True, dtype=torch.float32)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [p for p in PROJECTIONS if p in names] or "all-linear"
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=targets,
                                             lora_dropout=0.0, task_type="CAUSAL_LM"))
    encoded = []
    for prompt, answer in pairs:
        p_ids = tok(prompt, add_special_tokens=True)["input_ids"]
        a_ids = tok(answer, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if tok.eos_token_id
                                                                      is not None else [])
        ids = (p_ids + a_ids)[:max_tokens]
        labels = ([-100] * len(p_ids) + a_ids)[:max_tokens]
        encoded.append((torch.tensor([ids]), torch.tensor([labels])))
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        ids, labels = encoded[step % len(encoded)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        losses.append(float(loss.detach()))
    model.save_pretrained(str(out))
    return {"pairs": len(pairs), "steps": steps, "r": r, "first_loss": round(losses[0], 4),
            "last_loss": round(losses[-1], 4), "targets": targets}
