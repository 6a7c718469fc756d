"""``./puter.sh bench --ablation``: what each part of the SYNTHESIZING prompt is worth.

The same missions (a mixed dozen of tests/missions_hard.py) run on a fresh image under
each variant, one after the other in one run; pass rate (each mission's own unit
checks) and median cycle time per variant:

    full          the prompt as shipped
    no-memory     no Fractal Memory: no codex context, no skills (MEMORY_ENABLED=0)
    no-example    the rules without their worked example method
    no-rules      the task alone: no rules block at all (the state rule kept)

A variant changes the SYNTHESIZING state object's ``instructions`` slot, as anyone may
at run time, through a method installed on ``psm_synthesizing_obj``.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from batos.genesis import SYNTHESIZING_INSTRUCTIONS
from tests.conftest import KernelProcess
from tests.missions_hard import MISSIONS, run_missions, summary

PICK = ("run_length_encode", "brackets_balanced", "caesar_cipher", "remove_duplicates", "flatten_list",
        "binary_search", "to_roman", "is_prime", "median", "day_of_week", "parse_duration", "format_seconds")
SUBSET = [m for m in MISSIONS if m[0] in PICK]

_EXAMPLE = SYNTHESIZING_INSTRUCTIONS[SYNTHESIZING_INSTRUCTIONS.index("- Answer with only the code"):
                                     SYNTHESIZING_INSTRUCTIONS.index("{knowledge_block}")]
VARIANTS = {
    "full": ({}, None),
    "no-memory": ({"BATOS_MEMORY_ENABLED": "0"}, None),
    "no-example": ({}, SYNTHESIZING_INSTRUCTIONS.replace(
        _EXAMPLE, "- Answer with only the code in one ```python block.\n\n")),
    "no-rules": ({}, "{state_rule}\nAnswer with only the code in one ```python block.\n\n"
                     + SYNTHESIZING_INSTRUCTIONS[SYNTHESIZING_INSTRUCTIONS.index("{knowledge_block}"):]),
}


def set_instructions(conn, text: str) -> None:
    source = ("def set_instructions(self, text):\n    \"\"\"Replace this state's instructions.\"\"\"\n"
              "    self.instructions = text\n    self._p_changed = True\n    return len(text)\n")
    conn.call("install_method", target_oid="psm_synthesizing_obj", selector="set_instructions", source=source)
    conn.call("send_message", target_oid="psm_synthesizing_obj", selector="set_instructions", args=[text])


def run(names: list[str] | None = None) -> dict:
    out = {}
    for name in names or list(VARIANTS):
        env, instructions = VARIANTS[name]
        with tempfile.TemporaryDirectory(prefix=f"batos-bench-ablation-{name}-") as tmp:
            k = KernelProcess(Path(tmp) / "home", {"BATOS_MEMORY_ENABLED": "1", **env})
            k.start(wait_s=60)
            try:
                if env.get("BATOS_MEMORY_ENABLED") != "0":
                    k.wait_events(lambda ev: any(e["event"] == "codex_ingested" for e in ev), 180)
                with k.connect(timeout_s=900) as c:
                    if instructions is not None:
                        set_instructions(c, instructions)
                    records = run_missions(c, missions=SUBSET)
            finally:
                k.stop()
        result = summary(records)
        result["failed"] = [r["selector"] for r in records if not r["passed"]]
        out[name] = result
        print(f"  {name:<11} {result['passed']}/{result['missions']} pass, median cycle "
              f"{result['median_cycle_s']:.1f} s  failed: {', '.join(result['failed']) or '-'}", flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(run()))
