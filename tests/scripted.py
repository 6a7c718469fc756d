"""ScriptedModel: a scripted stand-in for a language model, for fast unit tests of the
state machine only.  It answers by prompt markers, from queues the test fills."""
from __future__ import annotations

import json

from batos.llm import Generation


class ScriptedModel:
    def __init__(self, plan: dict | str | None = None, methods: list[str] | None = None):
        self.plan = plan if plan is not None else {"queries": ["how"]}
        self.methods = list(methods or [])
        self.calls: list[dict] = []   # [{persona, messages, max_tokens, grammar}]

    def complete(self, persona, messages, max_tokens, grammar=None, cancel=None, temperature=None,
                 seed=None, stop_after_code=False) -> Generation:
        self.calls.append({"persona": persona, "messages": messages, "max_tokens": max_tokens,
                           "grammar": grammar, "temperature": temperature, "seed": seed,
                           "stop_after_code": stop_after_code})
        if grammar is not None:
            text = self.plan if isinstance(self.plan, str) else json.dumps(self.plan)
        else:
            if not self.methods:
                raise AssertionError("ScriptedModel ran out of scripted methods")
            text = self.methods.pop(0)
        return Generation(text=text, prompt_tokens=10, completion_tokens=5, seconds=0.001,
                          finish_reason="stop", model="scripted")
