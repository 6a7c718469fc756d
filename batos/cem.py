"""The Composite Entropy Metric (CEM): one score per cognitive cycle, from the seeds'
three parts, each in [0, 1]:

    relevance  = (pass_rate + fit) / 2
                 pass_rate: the share of the chosen candidate's examples it answered
                            right (1 when it had none to answer);
                 fit:       the similarity of the mission (selector and the Architect's
                            words) to the method's docstring and source
    novelty    = 1 - the similarity of the method to the nearest method already in the
                 skill library (1 when the library has none)
    diversity  = the mean pairwise distance (1 - similarity) among the cycle's
                 candidates, or else among BRICK's queries (0 when there was one)
    score      = w_r * relevance + w_n * novelty + w_d * diversity,  w from the state
                 machine object's ``cem_weights`` slot (they need not sum to 1; the
                 score is divided by their sum)

A FAILED cycle scores 0 (its parts are still reported).  Similarity is the cosine of
the Fractal Memory's sentence embeddings, clipped to [0, 1]; without the memory it is
the Jaccard similarity of the texts' words (``similarity="words"`` in the record).
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Callable, Optional, Sequence

DEFAULT_WEIGHTS = {"relevance": 0.5, "novelty": 0.3, "diversity": 0.2}
Embed = Callable[[list[str]], Any]     # texts -> unit vectors (rows)


def words_similarity(a: str, b: str) -> float:
    wa, wb = set(re.findall(r"[a-z0-9]+", a.lower())), set(re.findall(r"[a-z0-9]+", b.lower()))
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def similarities(embed: Optional[Embed], first: str, others: Sequence[str]) -> list[float]:
    """The similarity of ``first`` to each of ``others``, in [0, 1]."""
    if not others:
        return []
    if embed is None:
        return [words_similarity(first, o) for o in others]
    vectors = embed([first, *others])
    return [min(1.0, max(0.0, float(vectors[0] @ v))) for v in vectors[1:]]


def mean_distance(embed: Optional[Embed], texts: Sequence[str]) -> float:
    texts = [t for t in texts if t and t.strip()]
    if len(texts) < 2:
        return 0.0
    if embed is None:
        pairs = [1 - words_similarity(a, b) for a, b in itertools.combinations(texts, 2)]
    else:
        v = embed(list(texts))
        pairs = [1 - min(1.0, max(0.0, float(v[i] @ v[j])))
                 for i, j in itertools.combinations(range(len(texts)), 2)]
    return sum(pairs) / len(pairs)


def score(*, complete: bool, mission: str, method: Optional[str], pass_rate: Optional[float],
          library: Sequence[str], candidates: Sequence[str], queries: Sequence[str],
          weights: Optional[dict] = None, embed: Optional[Embed] = None) -> dict:
    """The CEM of one cycle: ``{"score", "relevance", "novelty", "diversity", "similarity"}``."""
    w = {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in (weights or {}).items() if k in DEFAULT_WEIGHTS}}
    if method:
        fit = similarities(embed, mission, [method])[0]
        passed = 1.0 if pass_rate is None else pass_rate
        relevance = (passed + fit) / 2
        nearest = max(similarities(embed, method, list(library)), default=0.0)
        novelty = 1.0 - nearest
    else:
        relevance = novelty = 0.0
    diversity = mean_distance(embed, candidates) if len(candidates) >= 2 else mean_distance(embed, queries)
    total = sum(w.values()) or 1.0
    value = (w["relevance"] * relevance + w["novelty"] * novelty + w["diversity"] * diversity) / total
    return {"score": round(value if complete else 0.0, 4), "relevance": round(relevance, 4),
            "novelty": round(novelty, 4), "diversity": round(diversity, 4),
            "similarity": "words" if embed is None else "embedding"}
