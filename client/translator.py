"""The Mission Brief Translator: natural language -> a command of the protocol.

Requests for a new object ("make me a shopping list object", "create a new object
called inventory") and for a copy ("clone this object", "make a copy of genesis called
g2") are read by ``object_command``, a deterministic pre-parse of clear phrasings that
runs before the model and needs none; they become ``create_object`` and ``clone``.
Everything else goes to the model.

The model decides only what it must (call or create, the selector, the
arguments), under a grammar built with ``LlamaGrammar.from_json_schema``; the
command around it is built here and validated with the protocol's pydantic
models.  The prompt is a fixed system prefix (instructions and examples) then
the target's methods and the request, so llama.cpp reuses the cached prefix:
one long-lived ``Llama`` per process.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from batos import protocol as p

DECISION_SCHEMA = {
    "type": "object",
    "properties": {
        "action": {"enum": ["call", "create"]},
        "selector": {"type": "string", "minLength": 1, "maxLength": 48},
        "args": {"type": "array", "maxItems": 6, "items": {"anyOf": [
            {"type": "number"}, {"type": "string", "maxLength": 300}, {"type": "boolean"}]}},
    },
    "required": ["action", "selector", "args"],
}

SYSTEM_PROMPT = """\
You translate the Architect's request into a JSON decision about one BAT OS object.
If one of the object's methods already does what is asked, answer {"action":"call","selector":"<that method>","args":[<the argument values taken from the request>]}. Numbers stay numbers; text is a string.
Otherwise answer {"action":"create","selector":"<a short snake_case name for a new method>","args":["<parameter names>"]}.

Examples, for an object with the methods greet(name), factorial(n) and join_words(first, second):
Request: Greet me as Architect
{"action":"call","selector":"greet","args":["Architect"]}
Request: what is the factorial of 6?
{"action":"call","selector":"factorial","args":[6]}
Request: join "bat" and "cave"
{"action":"call","selector":"join_words","args":["bat","cave"]}
Request: write a method that reverses a word
{"action":"create","selector":"reverse_word","args":["word"]}
Request: Can you count the vowels in a sentence?
{"action":"create","selector":"count_vowels","args":["text"]}"""


class Decision(BaseModel):
    action: str = Field(pattern="^(call|create)$")
    selector: str
    args: list[Any] = Field(default_factory=list, max_length=6)


class TranslationError(Exception):
    """The request could not be turned into a valid command; the message says why."""


class ParserModelUnavailable(Exception):
    """No parser model can be loaded; the message says what to do."""


_ARROW = re.compile(r"(?:^|[\s:;(,])(?P<lhs>[^;]+?)\s*(?:->|=>|→|==|gives(?: back)?|should (?:give|return|be)|returns|"
                    r"becomes|(?:turns )?back (?:in)?to|equals)\s*"
                    r"(?P<rhs>'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\{[^}]*\}|\([^)]*\)|[-+]?\d[\w.]*|True|False|None)",
                    re.I)


def extract_examples(utterance: str, n_params: int | None = None) -> list[list]:
    """``[[args, expected], ...]`` the Architect's words state, such as "'aaab' -> 'a3b1'",
    "[1, 2] gives 3", "f(4) == 'IV'" or "decode 'a3b1' back to 'aaab'" (values are Python
    literals; the arguments are what precedes the arrow,
    after any call's opening parenthesis).  Only what parses exactly is taken."""
    import ast
    found = []
    for m in _ARROW.finditer(utterance):
        lhs = m.group("lhs").strip()
        call = re.search(r"[A-Za-z_]\w*\((.*)\)$", lhs)
        if call:
            lhs = call.group(1)
        for cut in range(len(lhs)):      # the longest tail of the words that is a literal
            try:
                args = ast.literal_eval(f"({lhs[cut:]},)")
                expected = ast.literal_eval(m.group("rhs"))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
            if lhs[cut:].strip() and (cut == 0 or not lhs[cut - 1].isalnum()):
                if n_params is None or len(args) == n_params:
                    found.append([list(args), expected])
                break
    return found[:12]


def _snake(name: str) -> str:
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", name).strip("_").lower()
    name = re.sub(r"_+", "_", name)
    if not name or not name[0].isalpha():
        name = "do_" + name if name else "new_method"
    return name[:p.MAX_SELECTOR_LEN]


# -- object requests: a deterministic pre-parse, before the model --------------------------
_POLITE = r"^(?:(?:please|ok|okay|now)[\s,]+)?(?:(?:can|could|would|will)\s+you\s+)?(?:please\s+)?"
_NAMED = r"(?:\s+(?:called|named|as)\s+(?P<name>\"[^\"]{1,200}\"|'[^']{1,200}'|[\w.-]+(?:\s+[\w.-]+){0,3}))?"
_END = r"\s*[.!]?$"
_CREATE = re.compile(
    _POLITE + r"(?:make|create|build|add|give)(?:\s+(?:me|us))?\s+(?:(?:a|an|one|another)\s+)?"
    r"(?:(?:new|fresh|empty|blank)\s+)?(?:(?P<kind>[a-z][\w-]*(?:\s+[a-z][\w-]*){0,2})\s+)?object"
    + _NAMED + _END, re.I)
_CLONE = re.compile(
    _POLITE + r"(?:(?P<clone>clone)|copy|duplicate|(?:make|create|give)(?:\s+(?:me|us))?\s+(?:a|another)\s+"
    r"(?:copy|clone|duplicate)\s+of)"
    r"(?:\s+(?P<this>this(?:\s+(?:object|one))?|it|yourself|the\s+(?:target|current\s+object))"
    r"|\s+(?:the\s+)?(?P<ref>[\w.-]+)(?:\s+object)?)?" + _NAMED + _END, re.I)
# words that say a method or a computation is meant, not an object's kind
_NOT_KINDS = {"method", "methods", "function", "that", "which", "who", "returns", "return", "of", "for",
              "to", "the", "this", "with", "copy", "clone", "and", "in", "on", "from", "python", "code"}


def _object_name(raw: str | None) -> str | None:
    if not raw:
        return None
    if raw[0] in "'\"" and raw[-1] == raw[0]:
        return raw[1:-1].strip() or None
    name = re.sub(r"\s+", "_", raw.strip()).lower()
    return name[:200] or None


def resolve_object(ref: str, objects: list[dict] | None) -> str | None:
    """The oid ``ref`` names among ``objects`` ([{"oid", "name"}...]): an oid, an object's
    name, or a name with ``_obj`` left off; None if none does."""
    if objects is None:
        return ref
    refs = [o for o in objects if isinstance(o, dict)]
    for o in refs:
        if o.get("oid") == ref:
            return ref
    for o in refs:
        if str(o.get("name", "")).lower() == ref.lower():
            return o.get("oid")
    for o in refs:
        if o.get("oid") == f"{ref.lower()}_obj":
            return o.get("oid")
    return None


def object_command(utterance: str, target: str, objects: list[dict] | None = None) -> dict | None:
    """The ``create_object`` or ``clone`` command a clear request for an object says, or None
    (the model decides).  ``objects`` ([{"oid", "name"}...]) resolves a named original; a
    name that is no object there leaves the request to the model ("copy the list" may be a
    method; after "clone" it is passed on, for the kernel to answer UnknownObject)."""
    text = utterance.strip()
    m = _CLONE.match(text)
    if m:
        original = target
        if m.group("ref"):
            original = resolve_object(m.group("ref"), objects)
            if original is None and not m.group("clone"):
                return None
            original = original or m.group("ref")
        command = {"command": "clone", "target_oid": original}
        name = _object_name(m.group("name"))
        if name:
            command["name"] = name
        return command
    m = _CREATE.match(text)
    if m:
        kind = (m.group("kind") or "").lower()
        if set(kind.split()) & _NOT_KINDS:
            return None
        command = {"command": "create_object", "parents": ["root_obj"], "slots": {}}
        name = _object_name(m.group("name")) or _object_name(kind)
        if name:
            command["name"] = name
        return command
    return None


def validate(command: dict) -> dict:
    """``command``, checked against the protocol's model for it (when the protocol has one)."""
    model = p.REQUESTS.get(command["command"])
    if model is not None:
        try:
            model.model_validate(command)
        except ValidationError as exc:
            raise TranslationError(p.describe_validation_error(command["command"], exc)) from None
    return command


def find_parser_model(kernel_path: str | None = None, notify=lambda msg: None) -> Path:
    """The parser model's local path: HF_PARSER_REPO_ID + HF_PARSER_FILENAME (Hub download),
    else the kernel's managed copy, else the embedded Qwen GGUF.  LLAMA_MODEL_PATH still
    works, with a deprecation notice."""
    import config
    try:
        settings = config.load()    # an upgrade may have set the parser in overrides.json
    except config.ConfigError:
        settings = config.Settings()
    repo = os.environ.get("HF_PARSER_REPO_ID") or settings.HF_PARSER_REPO_ID
    filename = os.environ.get("HF_PARSER_FILENAME") or settings.HF_PARSER_FILENAME
    revision = os.environ.get("HF_PARSER_REVISION") or settings.HF_PARSER_REVISION
    if repo and filename:
        try:
            from huggingface_hub import hf_hub_download
            return Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision or None))
        except Exception as exc:
            raise ParserModelUnavailable(
                f"cannot get {filename} from {repo} ({type(exc).__name__}); unset HF_PARSER_REPO_ID "
                "to use the embedded model, or set HF_HUB_OFFLINE=0 with network access") from exc
    legacy = os.environ.get("LLAMA_MODEL_PATH")
    if legacy:
        notify("LLAMA_MODEL_PATH is deprecated: set HF_PARSER_REPO_ID and HF_PARSER_FILENAME, "
               "or leave both unset to use the kernel's model")
        if not Path(legacy).is_file():
            raise ParserModelUnavailable(f"LLAMA_MODEL_PATH={legacy} does not exist")
        return Path(legacy)
    if kernel_path and Path(kernel_path).is_file():
        return Path(kernel_path)
    try:
        from batos.llm.embedded import ModelUnavailable, embedded_gguf
        return embedded_gguf(settings.MODEL_CACHE_DIR)
    except (ModelUnavailable, Exception) as exc:
        raise ParserModelUnavailable(f"no parser model: {exc}") from exc


class Translator:
    """The parser: the kernel's own llama.cpp backend (``batos.llm.llama.LlamaBackend``),
    one long-lived model per process, the decision constrained by ``DECISION_SCHEMA``."""

    def __init__(self, model_path: Path, *, n_threads: int = 0, max_tokens: int = 64,
                 n_gpu_layers: int = -1):
        from batos.llm.llama import LlamaBackend
        self.model_path = model_path
        self.max_tokens = max_tokens
        self.backend = LlamaBackend(model_path, n_ctx=2048, n_threads=n_threads, seed=0,
                                    n_gpu_layers=n_gpu_layers)

    @property
    def load_seconds(self) -> float:
        return self.backend.load_seconds

    def load(self) -> None:
        from batos.llm.base import GenerationError
        try:
            self.backend.load()
        except GenerationError as exc:
            raise ParserModelUnavailable(f"cannot load the parser model {self.model_path}: {exc}") from exc

    def decide(self, utterance: str, methods: list[dict]) -> Decision:
        from batos.llm.base import GenerationError
        self.load()
        listing = "; ".join(f"{m['signature']}" + (f" - {m['doc']}" if m.get("doc") else "")
                            for m in methods) or "none"
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": f"The object's methods: {listing}\nRequest: {utterance}"}]
        try:
            text = self.backend.chat(messages, max_tokens=self.max_tokens, temperature=0.0,
                                     schema=DECISION_SCHEMA).text
        except GenerationError as exc:
            raise TranslationError(f"the parser model failed: {exc}") from exc
        try:
            return Decision.model_validate(json.loads(text))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise TranslationError(f"the parser's answer was not a valid decision: {text[:200]!r}") from exc

    def translate(self, utterance: str, target: str, methods: list[dict],
                  objects: list[dict] | None = None) -> dict:
        """The protocol command for ``utterance`` addressed to ``target``; ``objects`` (the
        image's [{"oid", "name"}...]) resolves an object named in a request to copy."""
        utterance = utterance.strip()
        if not utterance:
            raise TranslationError("nothing to translate")
        command = object_command(utterance, target, objects if objects is not None else [])
        if command is not None:
            return validate(command)
        decision = self.decide(utterance, methods)
        known = {m["selector"]: m for m in methods}
        selector = _snake(decision.selector)
        # a selector the object already answers is a call, whatever the model said:
        # a cycle would only replace a working method
        if selector in known:
            command = {"command": "send_message", "target_oid": target, "selector": selector,
                       "args": decision.args, "kwargs": {}}
        else:
            names = [_snake(str(a)) for a in decision.args if str(a).strip()]
            names = list(dict.fromkeys(n for n in names if p._IDENT.match(n)))
            brief = {"type": "unhandled_message", "selector": selector, "args": names, "kwargs": {},
                     "intent": utterance}
            examples = extract_examples(utterance, len(names) or None)
            if examples:
                brief["examples"] = examples
            command = {"command": "initiate_cognitive_cycle", "target_oid": target, "mission_brief": brief}
        return validate(command)


def warn(message: str) -> None:
    print(f"client: {message}", file=sys.stderr)
