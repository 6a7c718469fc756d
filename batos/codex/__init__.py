"""The Persona Codex: the golden dataset that seeds the system's identity.

``sections()`` gives the document's sections for the Fractal Memory;
``system_prompt(persona)`` the prompt under a persona's "System prompt" heading.
"""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

CODEX_PATH = Path(__file__).with_name("persona_codex.md")


@functools.lru_cache(maxsize=1)
def text() -> str:
    return CODEX_PATH.read_text(encoding="utf-8")


def version() -> str:
    return hashlib.sha256(text().encode()).hexdigest()[:16]


def sections() -> list[tuple[str, str]]:
    """[(title, body)] for each ``## `` section (the preamble is titled "Codex")."""
    parts = re.split(r"^## +(.+)$", text(), flags=re.M)
    out = [("Codex", parts[0].split("\n", 1)[1].strip())]
    for title, body in zip(parts[1::2], parts[2::2]):
        out.append((title.strip(), body.strip()))
    return out


def system_prompt(persona: str) -> str:
    for title, body in sections():
        if title == persona:
            m = re.search(r"^### System prompt\s*\n+(.+?)(?:\n\s*\n|\Z)", body, flags=re.M | re.S)
            if m:
                return " ".join(m.group(1).split())
    raise KeyError(f"the codex has no system prompt for {persona}")
