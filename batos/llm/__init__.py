"""The language models: one interface (``base.Backend``), two backends (``llama.py``,
``hf.py``), the kernel's per-persona residency (``models.py``) and where models come
from and are kept (``manager.py``, ``embedded.py``)."""
from batos.llm.base import Backend, Generation, GenerationError
from batos.llm.embedded import ModelUnavailable
from batos.llm.models import Models

__all__ = ["Backend", "Models", "Generation", "GenerationError", "ModelUnavailable"]
