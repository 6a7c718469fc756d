"""What every LLM backend returns, and the error of the generation phase."""
from __future__ import annotations

import dataclasses


class GenerationError(RuntimeError):
    """The model could not be loaded or could not answer."""


@dataclasses.dataclass
class Generation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    finish_reason: str = ""
    model: str = ""
    load_seconds: float = 0.0
