"""ScriptedModel: a scripted stand-in for a language model, for fast unit tests of the
state machine only.  It answers by prompt markers, from queues the test fills."""
from __future__ import annotations

import json

from batos.llm import Generation


class ScriptedModel:
    def __init__(self, plan: dict | str | None = None, methods: list[str] | None = None,
                 completions: list[str] | None = None):
        self.plan = plan if plan is not None else {"queries": ["how"]}
        self.methods = list(methods or [])
        self.completions = list(completions or [])   # code completions: method bodies
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

    def complete_text(self, persona, prompt, max_tokens, temperature=None, seed=None, stop=None,
                      cancel=None) -> Generation:
        self.calls.append({"persona": persona, "prompt": prompt, "max_tokens": max_tokens,
                           "temperature": temperature, "seed": seed, "stop": stop})
        if not self.completions:
            raise AssertionError("ScriptedModel ran out of scripted code completions")
        return Generation(text=self.completions.pop(0), prompt_tokens=10, completion_tokens=5,
                          seconds=0.001, finish_reason="stop", model="scripted")
