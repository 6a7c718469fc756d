"""The handler table: each handler unpacks a validated request and calls the kernel."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from batos import protocol as p
from batos.kernel import Kernel, Progress


async def handle_ping(kernel: Kernel, req: p.Ping, progress: Progress) -> dict:
    return kernel.ping()


async def handle_initiate_cognitive_cycle(kernel: Kernel, req: p.InitiateCognitiveCycle,
                                          progress: Progress) -> dict:
    return await kernel.run_cycle(req.target_oid, req.mission_brief.model_dump(), progress)


async def handle_send_message(kernel: Kernel, req: p.SendMessage, progress: Progress) -> dict:
    return await kernel.send(req.target_oid, req.selector, req.args, req.kwargs, progress)


async def handle_install_method(kernel: Kernel, req: p.InstallMethod, progress: Progress) -> dict:
    return await kernel.install(req.target_oid, req.selector, req.source)


async def handle_describe(kernel: Kernel, req: p.Describe, progress: Progress) -> dict:
    return await kernel.describe(req.target_oid)


async def handle_list_objects(kernel: Kernel, req: p.ListObjects, progress: Progress) -> list:
    return await kernel.list_objects()


async def handle_ingest_knowledge(kernel: Kernel, req: p.IngestKnowledge, progress: Progress) -> dict:
    return await kernel.ingest_knowledge(req.text, req.source, req.kind, req.replace)


async def handle_search_knowledge(kernel: Kernel, req: p.SearchKnowledge, progress: Progress) -> dict:
    return await kernel.search_knowledge(req.query, req.k, req.kind)


async def handle_ingest_lora(kernel: Kernel, req: p.IngestLora, progress: Progress) -> dict:
    return await kernel.ingest_lora(req.name, req.persona)


async def handle_get_parser_model(kernel: Kernel, req: p.GetParserModel, progress: Progress) -> dict:
    return await kernel.parser_model()


async def handle_shutdown(kernel: Kernel, req: p.Shutdown, progress: Progress) -> dict:
    kernel.begin_shutdown()
    return {"stopping": True}


Handler = Callable[[Kernel, Any, Progress], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {
    "ping": handle_ping,
    "initiate_cognitive_cycle": handle_initiate_cognitive_cycle,
    "send_message": handle_send_message,
    "install_method": handle_install_method,
    "describe": handle_describe,
    "list_objects": handle_list_objects,
    "ingest_knowledge": handle_ingest_knowledge,
    "search_knowledge": handle_search_knowledge,
    "ingest_lora": handle_ingest_lora,
    "get_parser_model": handle_get_parser_model,
    "shutdown": handle_shutdown,
}
assert set(HANDLERS) == set(p.REQUESTS), "every protocol command needs a handler"
