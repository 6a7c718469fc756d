"""The primordial objects the kernel incarnates in a new image.

``incarnate(root)`` creates whichever of them are missing, so an image made by
an older kernel gains new primordial objects on its next start.  The PSM's
states are objects here too: their prompts, persona, successor and token
budget are slots, read at the start of every cycle, so the machine can be
changed while the system runs.
"""
from __future__ import annotations

from typing import Any

from persistent.list import PersistentList

from batos import codex
from batos.llm.manager import ModelManager
from batos.uvm import UvmObject

# {persona -> (oid, role)}; each persona's system prompt comes from the Persona Codex
PERSONA_PROTOTYPES = {
    "ALFRED": ("alfred_prototype_obj", "System Steward"),
    "BRICK": ("brick_prototype_obj", "Deconstruction Engine"),
    "ROBIN": ("robin_prototype_obj", "Embodied Heart"),
    "BABS": ("babs_prototype_obj", "Knowledge Weaver"),
}

# Prompts put what never changes first, so llama.cpp can reuse the cached prefix.
DECOMPOSING_INSTRUCTIONS = """\
Give {plan_asks}. Answer in JSON.

Object: {target}
Missing method: {example_call}
{intent_line}Existing methods: {methods}"""

SYNTHESIZING_INSTRUCTIONS = """\
Rules for every BAT OS method:
- Write exactly one Python function (not a class) whose first parameter is self (the persistent object), with a one-line docstring.
- Use plain Python. Import only from: {allowed}.
- Never use eval, exec, open, __import__, globals, or any name or attribute that starts with an underscore.
- Return the result; do not print it.
{state_rule}
- Answer with only the code in one ```python block, like this example:
```python
def average(self, numbers):
    \"\"\"Return the mean of a list of numbers.\"\"\"
    return sum(numbers) / len(numbers)
```

{knowledge_block}{skills_block}Task: write the method {selector} for the object {target}.
Call to support: {example_call} ({params_hint})
{intent_line}{examples_line}Attributes already on self: {slots}
Existing methods: {methods}"""

# the rule about self, for a mission that keeps nothing and for one that keeps something
PURE_RULE = ("- This method keeps nothing: do not assign to self or change anything stored on self; "
             "compute the answer from the arguments and return it, the same answer every time.")
STATEFUL_RULE = ("- This method keeps something on self between calls. After changing self "
                 "(assigning self.<name>, or changing a list or dict stored on self), the statement "
                 "self._p_changed = True must come right before each return, and at the end. "
                 "Create a missing attribute with hasattr(self, 'name') before using it.")

STATES = (
    # (state, successor, persona, instructions, max_tokens setting or None)
    ("IDLE", "DECOMPOSING", None, "", None),
    ("DECOMPOSING", "DELEGATING", "BRICK", DECOMPOSING_INSTRUCTIONS, "PLAN_MAX_TOKENS"),
    ("DELEGATING", "SYNTHESIZING", "BABS", "", None),
    ("SYNTHESIZING", "VALIDATING", "target", SYNTHESIZING_INSTRUCTIONS, "METHOD_MAX_TOKENS"),
    ("VALIDATING", "COMPLETE", "ALFRED", "", None),
    ("COMPLETE", "", "ALFRED", "", None),
    ("FAILED", "", "ALFRED", "", None),
)


# earlier default instructions (sha256 of the text): an image whose state still holds one
# of these is given the current text at its next start; a prompt someone changed is kept
PREVIOUS_INSTRUCTIONS = {
    "DECOMPOSING": {'ace2bc314930f33c4f0f7e055b379e8c804224b5ede8b11c5d02aba87ea9ec64',
                    'f087729be75735d3fcdb2942a659802f7183a3fb36352d91f10d9bec342b6364'},
    "SYNTHESIZING": {'cda83dce9973bfc7aca2d4a63de2ab744120b96d772fb428ab0844d7cecbe147',
                     '9545d9577339f5b7269ff4796174449cc38faaadc063100b6694ead1d3d128f0'},
}


def _digest(text: str) -> str:
    import hashlib
    return hashlib.sha256(text.encode()).hexdigest()


def state_oid(state: str) -> str:
    return f"psm_{state.lower()}_obj"


def _register(objects: Any, oid: str, obj: UvmObject, created: list[str]) -> UvmObject:
    obj._oid = oid
    objects[oid] = obj
    created.append(oid)
    return obj


def incarnate(root: Any) -> list[str]:
    """Create the missing primordial objects; return the oids created."""
    objects = root["objects"]
    created: list[str] = []

    root_obj = objects.get("root_obj") or _register(
        objects, "root_obj",
        UvmObject("root", doc="The root prototype: every object delegates to it."), created)

    if "genesis_obj" not in objects:
        _register(objects, "genesis_obj",
                  UvmObject("genesis", parents=(root_obj,),
                            doc="The first object the Architect talks to."), created)

    for persona, (oid, role) in PERSONA_PROTOTYPES.items():
        if oid not in objects:
            _register(objects, oid, UvmObject(persona.lower(), parents=(root_obj,), persona=persona,
                                              role=role, system_prompt=codex.system_prompt(persona)),
                      created)

    state_proto = objects.get("psm_state_prototype_obj") or _register(
        objects, "psm_state_prototype_obj",
        UvmObject("psm_state", parents=(root_obj,),
                  doc="Prototype of the cognitive cycle's states."), created)
    for state, successor, persona, instructions, budget in STATES:
        oid = state_oid(state)
        if oid not in objects:
            _register(objects, oid,
                      UvmObject(state.lower(), parents=(state_proto,), state=state,
                                next=successor, persona=persona, instructions=instructions,
                                max_tokens_setting=budget, max_tokens=None), created)
        elif _digest(str(objects[oid]._slots.get("instructions", ""))) in PREVIOUS_INSTRUCTIONS.get(state, ()):
            objects[oid].instructions = instructions
    if "psm_obj" not in objects:
        _register(objects, "psm_obj",
                  UvmObject("psm", parents=(root_obj,),
                            states=PersistentList(objects[state_oid(s[0])] for s in STATES)),
                  created)
    if "models" not in root:
        root["models"] = ModelManager()
        created.append("models")
    if "memory" not in root:
        from batos.memory import KnowledgeCatalog   # numpy and zope.index: only when needed
        root["memory"] = KnowledgeCatalog()
        created.append("memory")
    return created
