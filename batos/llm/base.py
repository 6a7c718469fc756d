"""What every LLM backend offers and returns, and the error of the generation phase."""
from __future__ import annotations

import dataclasses
import re
import threading
from pathlib import Path
from typing import Protocol


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


class Backend(Protocol):
    """One model in memory: llama.cpp (``LlamaBackend``) or transformers
    (``TransformersBackend``); the kernel's personas and the client's translator use it."""
    kind: str
    path: Path
    load_seconds: float

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def unload(self) -> None: ...

    def chat(self, messages: list[dict], *, max_tokens: int, temperature: float,
             schema: dict | None = None, cancel: threading.Event | None = None,
             seed: int | None = None, stop_after_code: bool = False) -> Generation:
        """One chat completion; ``schema`` (JSON schema) constrains or asks for JSON;
        ``seed`` varies a sampled answer; ``stop_after_code`` ends the answer as soon as
        its first fenced code block is closed (finish_reason "stop")."""
        ...

    def complete_text(self, prompt: str, *, max_tokens: int, temperature: float,
                      cancel: threading.Event | None = None, seed: int | None = None,
                      stop: list[str] | None = None) -> Generation:
        """Plain completion of ``prompt``, no chat template (a code model continuing a
        file); ``stop`` strings end the text and are not part of it."""
        ...


# the first fenced block, closed: an opening fence line, then a line that starts with ```
_CODE_BLOCK_CLOSED = re.compile(r"(?:\A|\n)[ \t]*```[^\n]*\n(?:.*?\n)?[ \t]*```", re.S)


def code_block_closed(text: str) -> bool:
    """Whether ``text`` holds a closed fenced code block with a function definition in it (a
    line quoted in a fenced block while a repair explains the bug does not end the answer)."""
    return "```" in text and any("def " in m.group(0) for m in _CODE_BLOCK_CLOSED.finditer(text))
