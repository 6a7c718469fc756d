"""The Fractal Memory with the real embedded sentence model, in-process and over the wire."""
import time

import numpy as np
import pytest
import ZODB

import config
from batos import codex, genesis
from batos.image import Image
from batos.memory import FractalMemory, KnowledgeCatalog, VectorIndex, chunk_text
from batos.psm import PrototypalStateMachine
from tests.scripted import ScriptedModel

pytestmark = pytest.mark.model

DOCS = {
    "python-strings": "Python strings have an upper() method that returns a copy in capital letters. "
                      "The lower() method does the opposite.",
    "zodb": "ZODB keeps persistent objects in a FileStorage. Large binary data such as model files "
            "are stored as blobs in a separate blob directory.",
    "bats": "Bats are the only mammals capable of sustained flight. Many navigate by echolocation.",
    "vowels": "The vowels of English are a, e, i, o and u. Counting them means testing each letter.",
}


@pytest.fixture(scope="module")
def memory():
    return FractalMemory(config.load({}))


@pytest.fixture
def root(memory):
    db = ZODB.DB(None)
    conn = db.open()
    r = conn.root()
    r["memory"] = KnowledgeCatalog()
    for source, text in DOCS.items():
        chunks, vectors = memory.prepare(text)
        memory.ingest(r, chunks, vectors, source)
    yield r
    conn.transaction_manager.abort()
    conn.close()
    db.close()


@pytest.mark.parametrize("query, source", [
    ("how do I make text uppercase", "python-strings"),
    ("where are big binary files kept", "zodb"),
    ("flying mammals", "bats"),
    ("count a e i o u in a word", "vowels"),
])
def test_ingest_then_search_finds_the_right_chunk(memory, root, query, source):
    results = memory.search(root, query, 2)
    assert results[0]["source"] == source, results


def test_reingesting_the_same_text_adds_nothing_and_replace_swaps(memory, root):
    catalog = root["memory"]
    n = len(catalog)
    chunks, vectors = memory.prepare(DOCS["bats"])
    memory.ingest(root, chunks, vectors, "bats")
    assert len(catalog) == n
    chunks, vectors = memory.prepare("Bats roost in caves during the day.")
    memory.ingest(root, chunks, vectors, "bats", replace=True)
    assert len(catalog) == n
    hit = memory.search(root, "where do bats sleep in daytime", 1)[0]
    assert hit["text"] == "Bats roost in caves during the day."
    assert not [h for h in memory.search(root, "echolocation", 5) if "echolocation" in h["text"]]


def test_kind_filter_returns_only_that_kind(memory, root):
    chunks, vectors = memory.prepare("def shout(self, t):\n    return t.upper()")
    memory.ingest(root, chunks, vectors, "method:genesis_obj.shout", kind="method")
    hits = memory.search(root, "upper case text", 3, kind="method")
    assert hits and all(h["kind"] == "method" for h in hits)


def test_chunking_keeps_code_whole_and_bounds_paragraphs():
    text = ("One sentence here. " * 80) + "\n\n```python\ndef f(self):\n\n    return 1\n```\n\nTail."
    chunks = chunk_text(text, max_words=50)
    assert all(len(c.split()) <= 50 for c in chunks if not c.startswith("```"))
    assert "```python\ndef f(self):\n\n    return 1\n```" in chunks
    assert chunks[-1] == "Tail."


def test_ivf_index_finds_near_neighbours_at_scale():
    rng = np.random.default_rng(0)
    n, dim = 30_000, 64
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    catalog = KnowledgeCatalog()
    catalog.add([f"doc {i}" for i in range(n)], vecs, "synthetic")
    index = VectorIndex(ivf_threshold=10_000)
    index.sync(catalog)
    assert index.centroids is not None          # the IVF path, not the exact one
    found = 0
    for i in range(100):
        q = vecs[i] + 0.1 * rng.standard_normal(dim).astype(np.float32)
        q /= np.linalg.norm(q)
        found += index.search(q, 5)[0][0] == i + 1
    assert found >= 90
    more = rng.standard_normal((10, dim)).astype(np.float32)
    more /= np.linalg.norm(more, axis=1, keepdims=True)
    ids = catalog.add([f"new {i}" for i in range(10)], more, "later")
    index.sync(catalog)
    assert index.search(more[3], 1)[0][0] == ids[3]


def test_fresh_image_gets_the_codex_and_its_prompts(tmp_path, memory):
    image = Image.open(config.load({"BATOS_HOME": str(tmp_path)}))
    try:
        image.bootstrap(genesis.incarnate)
        with image.reading() as s:
            assert s.get("brick_prototype_obj").system_prompt == codex.system_prompt("BRICK")
            assert isinstance(s.root["memory"], KnowledgeCatalog)
    finally:
        image.close()


def test_cycle_retrieves_context_for_brick_queries(tmp_path, memory):
    image = Image.open(config.load({"BATOS_HOME": str(tmp_path)}))
    image.bootstrap(genesis.incarnate)
    try:
        chunks, vectors = memory.prepare(DOCS["vowels"])
        image.transact(lambda s: memory.ingest(s.root, chunks, vectors, "vowels"))
        skill = "Method shout of genesis_obj: Upper-case.\n```python\ndef shout(self, t):\n    return t.upper()\n```"
        image.transact(lambda s: memory.ingest(s.root, [skill], memory.embedder.encode([skill]),
                                               "method:genesis_obj.shout", kind="method"))
        # the same task on another name (cosine 0.77 to the mission) and a sibling task on a
        # similar topic (0.61), whose pattern a small model copies
        near = ("Method count_vowels_in_text of genesis_obj: Count the vowels in a text.\n```python\n"
                "def count_vowels_in_text(self, text):\n    return sum(c in 'aeiou' for c in text.lower())\n```")
        topic = ("Method count_consonants of genesis_obj: Count the consonants in a word.\n```python\n"
                 "def count_consonants(self, word):\n    return sum(c.isalpha() and c not in 'aeiou' "
                 "for c in word.lower())\n```")
        image.transact(lambda s: memory.ingest(s.root, [near], memory.embedder.encode([near]),
                                               "method:genesis_obj.count_vowels_in_text", kind="method"))
        image.transact(lambda s: memory.ingest(s.root, [topic], memory.embedder.encode([topic]),
                                               "method:genesis_obj.count_consonants", kind="method"))
        model = ScriptedModel(plan={"queries": ["english vowels"]},
                              methods=["```python\ndef count_vowels(self, word):\n"
                                       "    return sum(c in 'aeiou' for c in word.lower())\n```"])
        events, learned = [], []
        psm = PrototypalStateMachine(image, model, config.load({}), emit=events.append, memory=memory,
                                     learned=lambda *a: learned.append(a))
        cycle = psm.run("c1", "genesis_obj", {"selector": "count_vowels", "args": ["arg0"],
                                               "kwargs": {}, "intent": "count the vowels in a word"})
        assert cycle.state == "COMPLETE", cycle.reason
        delegated = next(e for e in events if e.get("state") == "DELEGATING")   # its own step's record
        assert delegated["queries"] == ["english vowels"]
        assert delegated["retrieved"] >= 1 and delegated["context_chars"] > 0
        assert "vowels" in delegated["sources"]
        # only a really similar method is shown as a skill (SKILL_MIN_COSINE), not an unrelated one
        assert delegated["skills"] == ["method:genesis_obj.count_vowels_in_text"]
        prompt = model.calls[-1]["messages"][-1]["content"]
        assert "The vowels of English" in prompt and "def count_vowels_in_text" in prompt
        assert "def shout" not in prompt and "def count_consonants" not in prompt
        assert learned and learned[0][:2] == ("genesis_obj", "count_vowels")
    finally:
        image.close()


@pytest.mark.process
def test_kernel_ingests_the_codex_once_and_serves_knowledge(make_kernel, tmp_path):
    k = make_kernel(env={"BATOS_MEMORY_ENABLED": "1"}, home=tmp_path / "h")
    codex_done = lambda ev: [e for e in ev if e["event"] == "codex_ingested"]  # noqa: E731
    assert codex_done(k.wait_events(lambda ev: codex_done(ev), 120))
    with k.connect(timeout_s=60) as c:
        hits = c.call("search_knowledge", query="what must a method that changes its state end with",
                      k=3)["results"]
        assert any("_p_changed" in h["text"] for h in hits)
        assert all(h["source"].startswith("codex:") for h in hits)
        r = c.call("ingest_knowledge", text=DOCS["bats"] + "\n\n" + DOCS["zodb"], source="notes")
        assert r["source"] == "notes" and r["chunks"] == 2
        top = c.call("search_knowledge", query="animals that fly at night", k=1)["results"][0]
        assert top["source"] == "notes" and "Bats" in top["text"]
        c.call("install_method", target_oid="genesis_obj", selector="shout",
               source='def shout(self, t):\n    """Upper-case a text."""\n    return t.upper()\n')
        learned = k.wait_events(lambda ev: any(e.get("event") == "install" and e.get("state") == "COMPLETE"
                                               for e in ev))
        assert learned
        deadline = time.monotonic() + 60
        skills = []
        while not skills and time.monotonic() < deadline:
            skills = c.call("search_knowledge", query="upper case", k=2, kind="method")["results"]
        assert skills and skills[0]["source"] == "method:genesis_obj.shout"
        for bad in ({"command": "ingest_knowledge", "text": "   ", "source": "x"},
                    {"command": "search_knowledge", "query": "x", "k": 0},
                    {"command": "ingest_knowledge", "text": "t"}):
            reply = c.request(bad)
            assert reply["ok"] is False and reply["error"]["type"] == "BadRequest", reply
    k.stop()
    k.start()
    with k.connect(timeout_s=60) as c:
        assert c.call("search_knowledge", query="ZODB blobs", k=1)["results"][0]["source"] == "notes"
    assert len(codex_done(k.wait_events(lambda ev: False, 2))) == 1   # not ingested again


@pytest.mark.process
def test_disabled_memory_says_so(kernel):
    with kernel.connect() as c:
        reply = c.request({"command": "search_knowledge", "query": "anything"})
    assert reply["error"]["type"] == "BadRequest" and "BATOS_MEMORY_ENABLED" in reply["error"]["message"]


@pytest.mark.parametrize("brief, asked, model_calls", [
    # something similar in memory, no examples given: queries and examples
    ({"selector": "count_vowels", "args": ["word"], "intent": "count the vowels in a word"},
     ["queries", "examples"], 2),
    # nothing similar in memory: BRICK is asked only for examples
    ({"selector": "gcd", "args": ["a", "b"], "intent": "greatest common divisor of two integers"},
     ["examples"], 2),
    # nothing similar and the Architect gave examples: no plan call at all
    ({"selector": "gcd", "args": ["a", "b"], "intent": "greatest common divisor of two integers",
      "examples": [[[12, 18], 6]]}, [], 1),
])
def test_brick_is_asked_only_for_what_the_cycle_lacks(tmp_path, memory, brief, asked, model_calls):
    image = Image.open(config.load({"BATOS_HOME": str(tmp_path)}))
    image.bootstrap(genesis.incarnate)
    try:
        chunks, vectors = memory.prepare(DOCS["vowels"])
        image.transact(lambda s: memory.ingest(s.root, chunks, vectors, "vowels"))
        chunks, vectors = memory.prepare(DOCS["bats"])
        image.transact(lambda s: memory.ingest(s.root, chunks, vectors, "bats"))
        selector = brief["selector"]
        body = "sum(c in 'aeiou' for c in word.lower())" if selector == "count_vowels" else "a"
        model = ScriptedModel(plan={"queries": ["english vowels"], "examples": []},
                              methods=[f"```python\ndef {selector}(self, {', '.join(brief['args'])}):\n"
                                       f"    return {body}\n```"])
        events = []
        psm = PrototypalStateMachine(image, model, config.load({}), emit=events.append, memory=memory)
        cycle = psm.run("c1", "genesis_obj", {"kwargs": {}, **brief})
        assert cycle.state == "COMPLETE" or cycle.phase == "examples", cycle.reason
        planned = next(e for e in events if e.get("state") == "DECOMPOSING")
        assert planned["plan_asked"] == asked and len(model.calls) == model_calls
        delegated = next(e for e in events if e.get("state") == "DELEGATING")
        if "queries" in asked:
            assert model.calls[0]["grammar"]["required"] == asked
            assert "search queries" in model.calls[0]["messages"][-1]["content"]
            assert "vowels" in delegated["sources"] and "bats" not in delegated["sources"]
        else:
            assert delegated["context_chars"] == 0      # nothing similar enough is shown
            prompt = model.calls[-1]["messages"][-1]["content"]
            assert "Relevant knowledge" not in prompt and "Bats" not in prompt
        if asked == ["examples"]:
            assert model.calls[0]["grammar"]["required"] == ["examples"]
            assert "search queries" not in model.calls[0]["messages"][-1]["content"]
    finally:
        image.close()


def test_a_failed_cycles_record_is_a_lesson_and_a_completed_ones_is_not_shown(tmp_path, memory):
    """The record, read back: each cycle's summary is in the memory (kind ``cycle``); a
    later cycle on a similar mission is shown what went wrong in a failed one (every chunk
    of it: a long record is split), never a completed one's timings."""
    from batos.knowledge import Knowledge, cycle_summary
    from batos.memory import chunk_text
    steps = [{"state": st, "duration_s": 1.5} for st in ("IDLE", "DECOMPOSING", "DELEGATING", "SYNTHESIZING",
                                                          "VALIDATING", "SYNTHESIZING", "VALIDATING")]
    failed = {"event": "cycle_end", "cycle_id": "f1", "state": "FAILED", "target": "genesis_obj",
              "selector": "parse_duration",
              "intent": "turn a duration like '1h30m' or '45s' or '2h5s' into seconds, where h is hours, m is "
                        "minutes and s is seconds, each part optional but always in that order, and spaces "
                        "between the parts ignored, so that a text such as '1h 30m' or '2h 5s' gives the same "
                        "number of seconds as the text written without any spaces at all; an empty text is "
                        "zero seconds, and a text with a unit the method does not know is an error that says "
                        "which unit it did not understand",
              "persona": "ALFRED", "model": "qwen.gguf", "duration_s": 30.1, "attempts": 2,
              "examples_passed": 0, "examples_run": 2, "cem": {"score": 0.4}, "phase": "examples",
              "reason": "VALIDATING: no candidate answered its examples (0 of 2 examples pass): "
                        "parse_duration('1h30m') should return 5400 but raised ValueError: invalid literal "
                        "for int() with base 10: '1h30'; parse_duration('2h5s') should return 7205 but raised "
                        "ValueError: invalid literal for int() with base 10: '2h5'",
              "steps": steps}
    done = {**failed, "cycle_id": "c1", "state": "COMPLETE", "reason": None, "phase": None,
            "selector": "parse_minutes", "intent": "turn a duration like '90m' into seconds",
            "examples_passed": 2}
    text = cycle_summary(failed)
    for fact in ("parse_duration", "'1h30m'", "FAILED", "qwen.gguf", "0 of 2", "0.4", "DECOMPOSING 1.5s",
                 "Failed in examples", "invalid literal"):
        assert fact in text, fact
    assert len(chunk_text(text)) >= 2          # long enough to be split: the lesson is every chunk
    image = Image.open(config.load({"BATOS_HOME": str(tmp_path)}))
    image.bootstrap(genesis.incarnate)
    try:
        knowledge = Knowledge(config.load({}), image, emit=lambda e: None)
        knowledge.memory, knowledge.pool = memory, object()
        knowledge._background = lambda fn, what: fn()      # the knowledge thread's job, run here
        for event in (failed, done):
            knowledge.record_cycle(event)
        with image.reading() as s:
            found = {h["source"] for h in memory.search(s.root, "parse a duration into seconds", 8, kind="cycle")}
        assert found == {"cycle:f1:failed", "cycle:c1"}
        model = ScriptedModel(plan={"queries": ["parse duration", "invalid literal for int"], "examples": []},
                              methods=["```python\ndef duration_to_seconds(self, text):\n    return 0\n```"])
        events = []
        psm = PrototypalStateMachine(image, model, config.load({}), emit=events.append, memory=memory)
        psm.run("c2", "genesis_obj", {"selector": "duration_to_seconds", "args": ["text"], "kwargs": {},
                                      "intent": "turn a duration like '2h5m' into seconds"})
        delegated = next(e for e in events if e.get("state") == "DELEGATING")
        assert "cycle:f1:failed" in delegated["sources"] and "cycle:c1" not in delegated["sources"]
        prompt = model.calls[-1]["messages"][-1]["content"]
        assert "invalid literal for int()" in prompt and "parse_minutes" not in prompt
        end = next(e for e in events if e["event"] == "cycle_end")
        assert end["intent"] == "turn a duration like '2h5m' into seconds" and end["model"]
        assert end["examples_run"] == 0 and end["examples_passed"] == 0     # no examples: none run
    finally:
        image.close()
