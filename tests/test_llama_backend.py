"""The llama.cpp backend's levers (batos/llm/llama.py): prompts resumed in a canonical
layout and kept prefix states (an answer must not depend on what the context held
before), and the stop at the closing fence.

The model tests use SmolLM2 (small, fast) with greedy decoding and the kernel's own
prompts (tests/bench/llm_levers.py builds them from batos.genesis and the Codex).
"""
from __future__ import annotations

import threading

import pytest

from batos.llm.embedded import smollm2_gguf
from batos.llm.base import code_block_closed
from batos.llm.llama import (ALIGN, MIN_BATCH, LlamaBackend, canonical_after,
                             reuse_point)
from batos.psm import PLAN_SCHEMA, extract_method
from tests.bench.llm_levers import MISSIONS, REPAIRS, code_messages, plan_messages, repair_messages

PLAN = {"max_tokens": 32, "schema": PLAN_SCHEMA}
CODE = {"max_tokens": 64}


# ---------------------------------------------------------------- without a model

@pytest.mark.parametrize("n_batch", [512, 64])
def test_reuse_points_are_aligned_and_leave_a_batch_to_decode(n_batch):
    for n_prompt in range(0, 3 * n_batch, 7):
        for shared in range(0, n_prompt + 1, 5):
            p = reuse_point(shared, n_prompt, n_batch)
            assert 0 <= p <= shared and p % ALIGN == 0
            if p:
                assert n_prompt - p >= MIN_BATCH
                first_chunk = min(n_prompt, (p // n_batch + 1) * n_batch) - p
                assert p % n_batch == 0 or first_chunk >= MIN_BATCH
            # nothing better was passed over: the next aligned point breaks a rule
            q = p + ALIGN
            if q <= min(shared, n_prompt - MIN_BATCH):
                assert q % n_batch and min(n_prompt, (q // n_batch + 1) * n_batch) - q < MIN_BATCH


def test_the_canonical_part_of_a_prompt_ends_before_its_ragged_tail():
    assert canonical_after(0, 100, 512) == 96
    assert canonical_after(0, 103, 512) == 96
    assert canonical_after(32, 100, 512) == 96
    assert canonical_after(0, 10, 512) == 0            # one small batch: nothing canonical
    assert canonical_after(0, 515, 512) == 512         # the last chunk (3 tokens) is small
    assert canonical_after(0, 540, 512) == 536
    assert canonical_after(512, 603, 512) == 600


def test_a_code_block_is_closed_by_its_second_fence():
    assert not code_block_closed("Here it is:\n```python\ndef f(self):\n    return 1\n")
    assert code_block_closed("```python\ndef f(self):\n    return 1\n```")
    assert code_block_closed("Here it is:\n```\ndef f(self):\n    return 1\n```\nMore")
    assert not code_block_closed("Here it is:\n```")
    assert not code_block_closed("use ``` fences")
    # a line quoted while explaining the bug is not the method
    quoted = "The wrong step is:\n```python\nreturn x.capitalize()\n```\nFixed:\n"
    assert not code_block_closed(quoted)
    assert code_block_closed(quoted + "```python\ndef f(self):\n    return 1\n```")


# ---------------------------------------------------------------- with SmolLM2

def backend(**kw) -> LlamaBackend:
    return LlamaBackend(smollm2_gguf(), n_ctx=2048, n_threads=2, seed=0, n_gpu_layers=0, **kw)


@pytest.fixture(scope="module")
def fresh():
    """Decodes every prompt whole, from an empty context: the reference answers."""
    b = backend(prefix_cache_bytes=0)
    yield b
    b.unload()


def fresh_answer(fresh: LlamaBackend, messages: list[dict], **kw) -> str:
    fresh.reset_context()
    return fresh.chat(messages, temperature=0.0, **kw).text


@pytest.mark.model
def test_kept_states_give_the_answers_of_a_fresh_decode(fresh):
    """Plan and method prompts in turns (as cycles send them), then repeats: the backend
    with kept states answers each as a fresh decode does, and reads less of each prompt."""
    kept = backend()
    calls = []
    for m in MISSIONS[:3]:
        calls += [(plan_messages(m), PLAN), (code_messages(m), CODE)]
    calls += [calls[1], calls[1], calls[0]]
    try:
        restored = []
        for messages, kw in calls:
            text = kept.chat(messages, temperature=0.0, **kw).text
            restored.append(kept.last_stats["restored_tokens"])
            assert text == fresh_answer(fresh, messages, **kw)
        assert kept.prefix_states.restores >= 4
        assert all(r > 0 for r in restored[2:6])      # the persona's prefix comes from a kept state
        assert kept.last_stats["reused_tokens"] > 0
    finally:
        kept.unload()


@pytest.mark.model
def test_the_live_context_is_reused_in_the_canonical_layout(fresh):
    """Without kept states: the same prompt twice (llama-cpp-python replayed its last token
    alone, which rounds differently), and prompts in turns, answer as a fresh decode."""
    live = backend(prefix_cache_bytes=0)
    try:
        messages = code_messages(MISSIONS[0])
        first = live.chat(messages, temperature=0.0, **CODE).text
        second = live.chat(messages, temperature=0.0, **CODE)
        assert live.last_stats["reused_tokens"] > 0
        assert second.text == first == fresh_answer(fresh, messages, **CODE)
        for m in MISSIONS[1:3]:
            for messages, kw in ((plan_messages(m), PLAN), (code_messages(m), CODE)):
                assert live.chat(messages, temperature=0.0, **kw).text == fresh_answer(fresh, messages, **kw)
    finally:
        live.unload()


@pytest.mark.model
def test_greedy_grammar_sampling_checks_the_likeliest_token_first(fresh):
    """A greedy answer under a grammar is the one llama-cpp-python's own chain gives (the
    grammar applied to the whole vocabulary at every step), token for token, but the
    grammar is applied to the whole vocabulary only where it refuses the likeliest token."""
    from llama_cpp import Llama
    from batos.llm.llama import GreedyGrammarSampler
    prose = [{"role": "user", "content": "Say hello to the Architect in one friendly sentence."}]
    # three plans cut at the budget, the prose, and a plan given room to finish (where the
    # grammar allows only the end of the answer)
    calls = [(plan_messages(m), PLAN) for m in MISSIONS[:3]] + [(prose, PLAN),
                                                               (plan_messages(MISSIONS[0]), {**PLAN, "max_tokens": 256})]
    fresh.load()
    llm = fresh._llm
    ours = []
    for messages, kw in calls:
        ours.append(fresh_answer(fresh, messages, **kw))
        assert isinstance(llm._sampler, GreedyGrammarSampler)
        assert llm._sampler.tokens > 0
        if messages is prose:       # the model wants prose: the grammar refuses its first word
            assert 0 < llm._sampler.full_passes < llm._sampler.tokens
    llm._init_sampler = lambda *a, **k: Llama._init_sampler(llm, *a, **k)   # the chain's way
    try:
        theirs = [fresh_answer(fresh, messages, **kw) for messages, kw in calls]
        assert not isinstance(llm._sampler, GreedyGrammarSampler)
    finally:
        del llm._init_sampler
    assert ours == theirs
    assert all(t.lstrip().startswith("{") for t in ours)
    import json
    assert isinstance(json.loads(ours[-1]), dict)        # finished under the grammar
    # sampled answers under a grammar keep llama-cpp-python's chain
    fresh.chat(calls[0][0], temperature=0.7, seed=3, **PLAN)
    assert not isinstance(llm._sampler, GreedyGrammarSampler)


TALKATIVE = [{"role": "user", "content": "Write a Python function to_upper(self, text) that returns the "
              "text in upper case, in a ```python block, then explain it in two sentences."}]


@pytest.mark.model
def test_stop_after_code_ends_the_answer_at_the_closing_fence(fresh):
    messages = TALKATIVE
    full = fresh.chat(messages, temperature=0.0, max_tokens=160)
    cut = fresh.chat(messages, temperature=0.0, max_tokens=160, stop_after_code=True)
    assert code_block_closed(full.text) and len(full.text) > len(cut.text)   # SmolLM2 talks on
    assert full.text.startswith(cut.text) and cut.text.rstrip().endswith("```")
    assert code_block_closed(cut.text) and not code_block_closed(cut.text[:-1])
    assert cut.finish_reason == "stop" and cut.completion_tokens < full.completion_tokens
    assert extract_method(cut.text, MISSIONS[0][0]) == extract_method(full.text, MISSIONS[0][0])


@pytest.mark.model
def test_stop_strings_end_the_answer_before_them(fresh):
    messages = TALKATIVE
    full = fresh.chat(messages, temperature=0.0, max_tokens=160).text
    assert "```" in full
    cut = fresh.chat(messages, temperature=0.0, max_tokens=160, stop=["```"])
    assert cut.finish_reason == "stop" and cut.text == full[:full.index("```")]


@pytest.mark.model
def test_a_draft_model_gets_the_logits_of_its_verification_batches(fresh):
    """Prompt lookup is not a backend option (it was slower), but the benchmark sets
    llama-cpp-python's draft model on the Llama: it must work without logits_all."""
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
    messages = repair_messages(REPAIRS[0])
    fresh.load()
    fresh._llm.draft_model = LlamaPromptLookupDecoding(num_pred_tokens=4)
    try:
        gen = fresh.chat(messages, temperature=0.0, **CODE)
    finally:
        fresh._llm.draft_model = None
    assert gen.completion_tokens > 8 and gen.finish_reason in ("stop", "length")


@pytest.mark.model
def test_the_old_call_still_works_and_cancel_stops_it(fresh):
    cancel = threading.Event()
    cancel.set()
    gen = fresh.chat(code_messages(MISSIONS[1]), max_tokens=64, temperature=0.0, schema=None, cancel=cancel)
    assert gen.finish_reason == "cancelled" and gen.completion_tokens <= 1
    gen = fresh.chat(plan_messages(MISSIONS[1]), max_tokens=32, temperature=0.0, schema=PLAN_SCHEMA)
    assert gen.text.startswith("{") and gen.prompt_tokens > 50


@pytest.mark.model
def test_a_kept_state_evicted_while_keeping_another_is_not_restored(fresh):
    """Keeping the live context can evict the kept state that best fits the next prompt
    (the RAM budget is full): that state must not then be restored (it once raised
    KeyError on every later call)."""
    code0, plan0, code1 = code_messages(MISSIONS[0]), plan_messages(MISSIONS[0]), code_messages(MISSIONS[1])
    probe = backend()
    try:
        probe.chat(code0, temperature=0.0, **CODE)
        probe.chat(plan0, temperature=0.0, **PLAN)          # keeps code0's state
        size_code = probe.prefix_states.bytes
        probe.chat(code1, temperature=0.0, **CODE)          # keeps plan0's state too
        size_plan = probe.prefix_states.bytes - size_code
    finally:
        probe.unload()
    assert size_code > 0 and size_plan > 0
    tight = backend(prefix_cache_bytes=size_code + size_plan // 2)
    try:
        tight.chat(code0, temperature=0.0, **CODE)
        tight.chat(plan0, temperature=0.0, **PLAN)
        # code0's state fits code1 best, but keeping plan0's state evicts it
        assert tight.chat(code1, temperature=0.0, **CODE).text == fresh_answer(fresh, code1, **CODE)
        assert tight.chat(plan0, temperature=0.0, **PLAN).text == fresh_answer(fresh, plan0, **PLAN)
        assert len(tight.prefix_states) >= 1
    finally:
        tight.unload()
