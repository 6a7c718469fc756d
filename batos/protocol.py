"""The Synaptic Bridge, version 1: the wire contract as pydantic models.

Shared by the kernel and the client; imports neither zmq nor ZODB.  See
../shared/PROTOCOL.md for the contract this module keeps.  Additions here
(the ``shutdown`` command, extra result fields) extend it without changing
what is there.
"""
from __future__ import annotations

import keyword
import re
from typing import Annotated, Any, Literal, Optional, Union

import ormsgpack
from batos.plain import to_wire  # noqa: F401 - part of the protocol's API
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt,
                      StrictStr, ValidationError, model_validator)

PROTOCOL_VERSION = 1
STATES = ("IDLE", "DECOMPOSING", "DELEGATING", "SYNTHESIZING", "VALIDATING", "COMPLETE", "FAILED")
MAX_SELECTOR_LEN = 64

_SELECTOR = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_selector(name: str) -> str:
    """A public method name: an identifier, not a keyword, not private or dunder."""
    if name.startswith("_"):
        raise ValueError(f"selector {name!r} is private; selectors may not start with '_'")
    if not _SELECTOR.match(name) or keyword.iskeyword(name) or len(name) > MAX_SELECTOR_LEN:
        raise ValueError(f"selector {name!r} is not a valid method name "
                         f"(letters, digits and '_', at most {MAX_SELECTOR_LEN} characters)")
    return name


def check_identifier(name: str) -> str:
    if not _IDENT.match(name) or keyword.iskeyword(name) or name.startswith("__"):
        raise ValueError(f"{name!r} is not a valid argument name")
    return name


Selector = Annotated[StrictStr, AfterValidator(check_selector)]
ArgName = Annotated[StrictStr, AfterValidator(check_identifier)]
ObjectId = Annotated[StrictStr, Field(min_length=1, max_length=200)]
RequestId = Union[StrictStr, StrictInt, None]


class _Model(BaseModel):
    # unknown fields are ignored, so newer clients can add fields
    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------- requests

class Request(_Model):
    id: RequestId = None
    command: StrictStr
    # progress events?  Unset: yes when the request has an id (its events can be matched),
    # no without one (the seed client sends, then reads one reply)
    stream: Optional[StrictBool] = None

    @property
    def streams(self) -> bool:
        return self.id is not None if self.stream is None else self.stream


class Ping(Request):
    command: Literal["ping"] = "ping"


MAX_EXAMPLES = 12


def _check_example(value: Any) -> tuple[list, Any]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not isinstance(value[0], (list, tuple)):
        raise ValueError("an example is [args, expected]: a list of arguments and the expected "
                         "result, e.g. [[\"aaab\"], \"a3b1\"]")
    return [list(value[0]), value[1]]


Example = Annotated[Any, AfterValidator(_check_example)]


class MissionBrief(_Model):
    type: StrictStr = "unhandled_message"
    selector: Selector
    args: list[ArgName] = Field(default_factory=list, max_length=32)   # parameter names
    kwargs: dict[ArgName, Any] = Field(default_factory=dict)           # keyword names -> example
    intent: Optional[Annotated[StrictStr, Field(max_length=4000)]] = None
    # the call that was not understood, with its values (set by _doesNotUnderstand_)
    example_call: Optional[Annotated[StrictStr, Field(max_length=2000)]] = None
    # [[args, expected], ...]: calls the method must answer so; stateful examples run in order
    examples: list[Example] = Field(default_factory=list, max_length=MAX_EXAMPLES)

    @model_validator(mode="after")
    def _seed_intent(self) -> "MissionBrief":
        """The seed client puts the Architect's words in ``kwargs["intent"]``: they are the
        intent, not a keyword argument of the method."""
        words = self.kwargs.get("intent")
        if self.intent is None and isinstance(words, str):
            self.intent = words[:4000]
            self.kwargs = {k: v for k, v in self.kwargs.items() if k != "intent"}
        return self


class InitiateCognitiveCycle(Request):
    command: Literal["initiate_cognitive_cycle"] = "initiate_cognitive_cycle"
    target_oid: ObjectId
    mission_brief: MissionBrief


class SendMessage(Request):
    command: Literal["send_message"] = "send_message"
    target_oid: ObjectId
    selector: Selector
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[ArgName, Any] = Field(default_factory=dict)


class InstallMethod(Request):
    command: Literal["install_method"] = "install_method"
    target_oid: ObjectId
    selector: Selector
    source: StrictStr
    # examples kept with the method (None: keep the replaced method's); they run before
    # the method is installed, and again whenever it is replaced
    examples: Optional[list[Example]] = Field(default=None, max_length=MAX_EXAMPLES)


class Describe(Request):
    command: Literal["describe"] = "describe"
    target_oid: ObjectId


class ListObjects(Request):
    command: Literal["list_objects"] = "list_objects"


class IngestKnowledge(Request):
    """Extension: chunk, embed and index text into the Fractal Memory."""
    command: Literal["ingest_knowledge"] = "ingest_knowledge"
    text: Annotated[StrictStr, Field(min_length=1, max_length=1_000_000)]
    source: Annotated[StrictStr, Field(min_length=1, max_length=300)]
    kind: Annotated[StrictStr, Field(min_length=1, max_length=40)] = "text"
    replace: StrictBool = False


class SearchKnowledge(Request):
    """Extension: hybrid (vector + BM25) search of the Fractal Memory."""
    command: Literal["search_knowledge"] = "search_knowledge"
    query: Annotated[StrictStr, Field(min_length=1, max_length=2000)]
    k: Annotated[StrictInt, Field(ge=1, le=50)] = 5
    kind: Optional[Annotated[StrictStr, Field(max_length=40)]] = None


class IngestLora(Request):
    """Extension: store the LoRA adapters staged in LORA_STAGING_DIR; optionally give one
    to a persona (``name`` picks the adapter)."""
    command: Literal["ingest_lora"] = "ingest_lora"
    name: Optional[Annotated[StrictStr, Field(min_length=1, max_length=200)]] = None
    persona: Optional[Literal["ALFRED", "BRICK", "ROBIN", "BABS"]] = None


class GetParserModel(Request):
    """Extension: the local path of the client's parser model, as the kernel keeps it."""
    command: Literal["get_parser_model"] = "get_parser_model"


class Shutdown(Request):
    """Extension: ask the kernel to stop gracefully (the watchdog's first rung)."""
    command: Literal["shutdown"] = "shutdown"


ObjectName = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class CreateObject(Request):
    """Extension: a new object in the image, delegating to ``parents`` (default: the root
    prototype), with plain-data ``slots``."""
    command: Literal["create_object"] = "create_object"
    name: Optional[ObjectName] = None
    parents: list[ObjectId] = Field(default_factory=lambda: ["root_obj"], max_length=16)
    slots: dict[StrictStr, Any] = Field(default_factory=dict)


class Clone(Request):
    """Extension: a new object with a shallow copy of ``target_oid``'s slots (its methods
    included) and the same parents."""
    command: Literal["clone"] = "clone"
    target_oid: ObjectId
    name: Optional[ObjectName] = None


class ListAdaptations(Request):
    """Extension: the self-tuning loop's adopted adaptations."""
    command: Literal["list_adaptations"] = "list_adaptations"


class RevertAdaptation(Request):
    """Extension: undo an adopted adaptation, named by ``adaptation``; without it, the
    request's ``id`` names it (``{"command": "revert_adaptation", "id": "<its id>"}``)."""
    command: Literal["revert_adaptation"] = "revert_adaptation"
    adaptation: Optional[Annotated[StrictStr, Field(min_length=1, max_length=64)]] = None

    @model_validator(mode="after")
    def _named(self) -> "RevertAdaptation":
        if self.adaptation is None and not isinstance(self.id, str):
            raise ValueError("name the adaptation: 'adaptation' (or the request's 'id') is its id")
        return self

    @property
    def id_(self) -> str:
        return self.adaptation if self.adaptation is not None else str(self.id)


REQUESTS: dict[str, type[Request]] = {
    m.model_fields["command"].default: m
    for m in (Ping, InitiateCognitiveCycle, SendMessage, InstallMethod, Describe, ListObjects,
              IngestKnowledge, SearchKnowledge, IngestLora, GetParserModel, Shutdown, CreateObject, Clone,
              ListAdaptations, RevertAdaptation)
}


# ---------------------------------------------------------------------- results
# Every command's result, as the kernel sends it: the tests check every reply they get
# against these (``check_reply``), so the contract and the kernel cannot drift apart.

class SandboxStatus(_Model):
    idle: int
    busy: int
    starting: int
    started: int
    lost: int
    layers: list[str]
    error: Optional[str] = None


class PingResult(_Model):
    pong: Literal[True] = True
    version: str
    uptime_s: float
    pid: int
    protocol: int = PROTOCOL_VERSION
    cycles_running: int = 0
    sandbox: Optional[SandboxStatus] = None


class CemScore(_Model):
    """The Composite Entropy Metric of a cycle (README: the self-tuning loop)."""
    score: float
    relevance: float
    novelty: float
    diversity: float
    similarity: Literal["embedding", "words"]


class CycleResult(_Model):
    cycle_id: str
    state: Literal["COMPLETE", "FAILED"]
    selector: str
    source: Optional[str] = None
    reason: Optional[str] = None
    phase: Optional[Literal["generation", "parsing", "audit", "examples", "install", "cycle",
                            "internal"]] = None
    examples: list[ExampleOutcome] = Field(default_factory=list)   # the chosen candidate's
    candidates: int = 0
    transitions: list[str]
    persona: Optional[str] = None
    attempts: int = 1
    duration_s: Optional[float] = None
    cem: Optional[CemScore] = None


class TaughtCycle(_Model):
    selector: str
    cycle_id: str


class SendResult(_Model):
    value: Any = None
    cycle_id: Optional[str] = None
    # every cycle the call started, in order, when it started one for a method another
    # method called without having it (doesNotUnderstand inside methods)
    cycles: list[TaughtCycle] = Field(default_factory=list)


class ExampleOutcome(_Model):
    args: list
    expected: Any = None
    actual: Any = None
    error: Optional[str] = None
    passed: bool


class InstallResult(_Model):
    state: Literal["COMPLETE", "FAILED"]
    findings: list[str]
    examples: list[ExampleOutcome] = Field(default_factory=list)


class MethodInfo(_Model):
    selector: str
    signature: str
    doc: str = ""
    owner: Optional[str] = None   # the oid of the object whose slot holds it
    examples: list = Field(default_factory=list)   # [[args, expected], ...] kept with it


class DescribeResult(_Model):
    oid: str
    name: str
    parents: list[str]
    slots: dict[str, str]
    methods: list[MethodInfo]


class ObjectRef(_Model):
    oid: str
    name: str


class IngestResult(_Model):
    source: str
    chunks: int
    ids: list[int]


class SearchHit(_Model):
    id: int
    text: str
    source: str
    kind: str
    score: float


class SearchResult(_Model):
    results: list[SearchHit]
    took_ms: float


class LoraResult(_Model):
    adapters: list[dict]
    persona: Optional[str] = None


class ParserModelResult(_Model):
    path: str
    sha256: str
    source: str
    kind: str


class AdaptationList(_Model):
    adaptations: list[dict]


class ShutdownResult(_Model):
    stopping: Literal[True]


RESULTS: dict[str, Any] = {
    "ping": PingResult, "initiate_cognitive_cycle": CycleResult, "send_message": SendResult,
    "install_method": InstallResult, "describe": DescribeResult, "list_objects": list[ObjectRef],
    "ingest_knowledge": IngestResult, "search_knowledge": SearchResult, "ingest_lora": LoraResult,
    "get_parser_model": ParserModelResult, "shutdown": ShutdownResult,
    "create_object": ObjectRef, "clone": ObjectRef,
    "list_adaptations": AdaptationList, "revert_adaptation": dict,
}
assert set(RESULTS) == set(REQUESTS), "every protocol command needs a result model"


# ---------------------------------------------------------------------- replies

class ErrorInfo(_Model):
    type: Literal["BadRequest", "UnknownCommand", "UnknownObject", "MethodError", "Timeout",
                  "Rejected", "Busy", "Internal"]
    message: str


class FinalReply(_Model):
    id: RequestId = None
    final: Literal[True] = True
    ok: bool
    result: Any = None
    error: Optional[ErrorInfo] = None


class ProgressEvent(_Model):
    id: RequestId = None
    final: Literal[False] = False
    event: str
    cycle_id: Optional[str] = None
    state: Optional[str] = None


def check_reply(command: str, reply: dict) -> None:
    """Raise ``ValidationError`` unless ``reply`` is a final reply or progress event of the
    contract, with ``command``'s result model when it succeeded (or a FAILED result beside
    an error, for the commands that send one)."""
    from pydantic import TypeAdapter
    if reply.get("final") is False:
        ProgressEvent.model_validate(reply)
        return
    final = FinalReply.model_validate(reply)
    if final.ok:
        TypeAdapter(RESULTS[command]).validate_python(final.result)
    elif final.result is not None and command in ("initiate_cognitive_cycle", "send_message"):
        CycleResult.model_validate(final.result)
    elif final.result is not None and command == "install_method":
        InstallResult.model_validate(final.result)


def ok_reply(request_id: Any, result: Any) -> dict:
    return {"id": request_id, "final": True, "ok": True, "result": result}


def error_reply(request_id: Any, type_: str, message: str, **details: Any) -> dict:
    error = {"type": type_, "message": message}
    error.update(details)
    return {"id": request_id, "final": True, "ok": False, "error": error}


def progress(request_id: Any, event: str, **fields: Any) -> dict:
    msg = {"id": request_id, "final": False, "event": event}
    msg.update(fields)
    return msg


# --------------------------------------------------------------------- encoding

def pack(message: Any) -> bytes:
    return ormsgpack.packb(message)


def unpack(frame: bytes) -> Any:
    return ormsgpack.unpackb(frame)


def describe_validation_error(command: str, exc: ValidationError) -> str:
    """One readable line per problem: "send_message: args: Input should be a valid list"."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "request"
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{where}: {msg}")
    return f"{command}: " + "; ".join(parts)
