"""Two-Cycle Introspective Genesis: on a new image the system writes how to show itself.

After the Persona Codex is in the memory (when the memory is on), and without
delaying ``ping``, the kernel runs two cognitive cycles on ``genesis_obj``:

1. ``describe_how_to_display_yourself``: ALFRED reasons about how BAT OS should
   present itself in a terminal and writes a method that returns that reasoning,
   the display brief; the kernel calls it.
2. ``display_yourself``: a cycle whose mission *is* that brief, writing a method
   that renders the system's state as text.  Its parameter ``system`` is the
   plain-data view the kernel passes to any method with a parameter of that name
   (its objects, their methods and slots, the recent cycles): no new power in the
   sandbox.

Both are logged like any cycle.  The image records genesis as done only when
``display_yourself`` answered with text; otherwise the kernel keeps serving and
tries again at its next start.  ``GENESIS=0`` turns it off.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from batos.protocol import MissionBrief

if TYPE_CHECKING:
    from batos.kernel import Kernel

log = logging.getLogger("batos.genesis")
TARGET = "genesis_obj"
BRIEF_SELECTOR = "describe_how_to_display_yourself"
DISPLAY_SELECTOR = "display_yourself"
WAIT_FOR_MEMORY_S = 300.0

BRIEF_MISSION = MissionBrief(
    selector=BRIEF_SELECTOR, args=[],
    intent=("As ALFRED, the System Steward, reason about how BAT OS should present itself to the "
            "Architect in a terminal, and return that reasoning as a display brief: one string of "
            "a few sentences saying what a display of the system must show (its objects, each "
            "object's methods, and its recent cognitive cycles with their outcome), in what order, "
            "and how to lay it out as plain text lines of at most 80 characters. The method takes "
            "no arguments, keeps nothing, and returns the brief string."))

SAMPLE_VIEW = {
    "version": "1.0", "uptime_s": 12.5, "object_count": 2,
    "objects": [{"oid": "genesis_obj", "name": "genesis", "parents": ["root_obj"],
                 "methods": ["greet"], "slots": []},
                {"oid": "root_obj", "name": "root", "parents": [], "methods": [], "slots": []}],
    "recent_cycles": [{"cycle_id": "a1b2c3", "target": "genesis_obj", "selector": "greet",
                       "state": "COMPLETE", "duration_s": 9.5, "persona": "ALFRED"}],
}


def display_mission(brief: str) -> MissionBrief:
    """The second cycle's mission: the brief the first one wrote, and the view's shape."""
    return MissionBrief(
        selector=DISPLAY_SELECTOR, args=["system"],
        intent=(f"{brief.strip()[:2500]}\n\nWrite display_yourself(self, system): system is a dict "
                "with 'version' (str), 'uptime_s' (float), 'object_count' (int), 'objects' (a list of "
                "dicts with 'oid', 'name', 'parents', 'methods' and 'slots', the last three lists of "
                "strings) and 'recent_cycles' (a list of dicts with 'cycle_id', 'target', 'selector', "
                "'state', 'duration_s', 'persona'). Return the display as one string of text lines "
                "joined with newlines; keep nothing on self."),
        example_call=f"display_yourself({SAMPLE_VIEW!r})"[:2000])


def needed(kernel: "Kernel") -> bool:
    with kernel.image.reading() as s:
        return not s.root["batos"].get("genesis")


async def run(kernel: "Kernel") -> bool:
    """Run genesis if the image has not had it; True when ``display_yourself`` now answers."""
    if not await kernel.in_thread(lambda: needed(kernel)):
        return True
    t0 = time.monotonic()
    emit = kernel.metalog.write
    try:
        await _wait_for_memory(kernel)
        emit({"event": "genesis", "step": "start"})
        reply = await kernel.send(TARGET, BRIEF_SELECTOR, [], {}) if await _has(kernel, BRIEF_SELECTOR) \
            else await _teach_and_call(kernel, BRIEF_MISSION)
        brief = reply.get("value")
        if not isinstance(brief, str) or len(brief.strip()) < 20:
            raise GenesisFailed(f"{BRIEF_SELECTOR} returned {brief!r}, not a display brief")
        emit({"event": "genesis", "step": "brief", "brief": brief[:2000]})
        result = await kernel.run_cycle(TARGET, display_mission(brief))
        if result["state"] != "COMPLETE":
            raise GenesisFailed(f"the cycle for {DISPLAY_SELECTOR} FAILED: {result.get('reason')}")
        shown = (await kernel.send(TARGET, DISPLAY_SELECTOR, [], {})).get("value")
        if not isinstance(shown, str) or not shown.strip():
            raise GenesisFailed(f"{DISPLAY_SELECTOR} returned {shown!r}, not text")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("genesis: did not complete (%s: %s); the kernel goes on serving and tries "
                    "again at its next start", type(exc).__name__, exc)
        emit({"event": "genesis", "step": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
              "seconds": round(time.monotonic() - t0, 1)})
        return False

    def done(s: Any) -> None:
        s.root["batos"]["genesis"] = {"at": time.time(), "brief": brief[:2000]}
    await kernel.in_thread(lambda: kernel.image.transact(done, note="genesis done"))
    emit({"event": "genesis", "step": "done", "seconds": round(time.monotonic() - t0, 1),
          "display_chars": len(shown)})
    log.info("genesis: display_yourself is written (%.1fs)", time.monotonic() - t0)
    return True


class GenesisFailed(Exception):
    pass


async def _has(kernel: "Kernel", selector: str) -> bool:
    def read() -> bool:
        with kernel.image.reading() as s:
            return s.get(TARGET)._find_slot(selector) is not None
    return await kernel.in_thread(read)


async def _teach_and_call(kernel: "Kernel", mission: MissionBrief) -> dict:
    result = await kernel.run_cycle(TARGET, mission)
    if result["state"] != "COMPLETE":
        raise GenesisFailed(f"the cycle for {mission.selector} FAILED: {result.get('reason')}")
    return await kernel.send(TARGET, mission.selector, [], {})


async def _wait_for_memory(kernel: "Kernel") -> None:
    """With the memory on, the codex first (its chunks inform both cycles)."""
    if not kernel.settings.MEMORY_ENABLED:
        return
    deadline = time.monotonic() + WAIT_FOR_MEMORY_S
    while time.monotonic() < deadline and not kernel.knowledge.codex_ready:
        await asyncio.sleep(0.5)
