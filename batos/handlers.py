"""The handler table: each handler unpacks a validated request and calls the kernel.

``HANDLERS = {command: Handler(fn, inline=..., while_stopping=...)}``: ``inline``
handlers are answered on the event loop the moment their frame is read, never
queued behind other work (``ping``: liveness must not wait); ``while_stopping``
ones are still answered during shutdown.  The server takes this table as it is
given (``Server(kernel, HANDLERS, ...)``).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from batos import protocol as p

if TYPE_CHECKING:
    from batos.kernel import Kernel, Progress


@dataclasses.dataclass(frozen=True)
class Handler:
    run: Callable[["Kernel", Any, "Progress"], Any]   # a coroutine function, or plain when inline
    inline: bool = False
    while_stopping: bool = False


def handle_ping(kernel: "Kernel", req: p.Ping, progress: "Progress") -> dict:
    return kernel.ping()


async def handle_initiate_cognitive_cycle(kernel: "Kernel", req: p.InitiateCognitiveCycle,
                                          progress: "Progress") -> dict:
    return await kernel.run_cycle(req.target_oid, req.mission_brief, progress)


async def handle_send_message(kernel: "Kernel", req: p.SendMessage, progress: "Progress") -> dict:
    return await kernel.send(req.target_oid, req.selector, req.args, req.kwargs, progress)


async def handle_install_method(kernel: "Kernel", req: p.InstallMethod, progress: "Progress") -> dict:
    return await kernel.install(req.target_oid, req.selector, req.source, req.examples)


async def handle_describe(kernel: "Kernel", req: p.Describe, progress: "Progress") -> dict:
    return await kernel.describe(req.target_oid)


async def handle_list_objects(kernel: "Kernel", req: p.ListObjects, progress: "Progress") -> list:
    return await kernel.list_objects()


async def handle_ingest_knowledge(kernel: "Kernel", req: p.IngestKnowledge, progress: "Progress") -> dict:
    return await kernel.ingest_knowledge(req.text, req.source, req.kind, req.replace)


async def handle_search_knowledge(kernel: "Kernel", req: p.SearchKnowledge, progress: "Progress") -> dict:
    return await kernel.search_knowledge(req.query, req.k, req.kind)


async def handle_ingest_lora(kernel: "Kernel", req: p.IngestLora, progress: "Progress") -> dict:
    return await kernel.ingest_lora(req.name, req.persona)


async def handle_get_parser_model(kernel: "Kernel", req: p.GetParserModel, progress: "Progress") -> dict:
    return await kernel.parser_model()


async def handle_create_object(kernel: "Kernel", req: p.CreateObject, progress: "Progress") -> dict:
    return await kernel.create_object(req.name, req.parents, req.slots)


async def handle_clone(kernel: "Kernel", req: p.Clone, progress: "Progress") -> dict:
    return await kernel.clone(req.target_oid, req.name)


async def handle_list_adaptations(kernel: "Kernel", req: p.ListAdaptations, progress: "Progress") -> dict:
    return await kernel.list_adaptations()


async def handle_revert_adaptation(kernel: "Kernel", req: p.RevertAdaptation, progress: "Progress") -> dict:
    return await kernel.revert_adaptation(req.id_)


async def handle_shutdown(kernel: "Kernel", req: p.Shutdown, progress: "Progress") -> dict:
    kernel.shutdown.request("a shutdown request")
    return {"stopping": True}


HANDLERS: dict[str, Handler] = {
    "ping": Handler(handle_ping, inline=True, while_stopping=True),
    "initiate_cognitive_cycle": Handler(handle_initiate_cognitive_cycle),
    "send_message": Handler(handle_send_message),
    "install_method": Handler(handle_install_method),
    "describe": Handler(handle_describe),
    "list_objects": Handler(handle_list_objects),
    "ingest_knowledge": Handler(handle_ingest_knowledge),
    "search_knowledge": Handler(handle_search_knowledge),
    "ingest_lora": Handler(handle_ingest_lora),
    "get_parser_model": Handler(handle_get_parser_model),
    "shutdown": Handler(handle_shutdown, while_stopping=True),
    "create_object": Handler(handle_create_object),
    "clone": Handler(handle_clone),
    "list_adaptations": Handler(handle_list_adaptations),
    "revert_adaptation": Handler(handle_revert_adaptation),
}
assert set(HANDLERS) == set(p.REQUESTS), "every protocol command needs a handler"
