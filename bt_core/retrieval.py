"""Retrieval for HotPotQA: a Retriever interface, BM25 over a passage pool, and a ColBERTv2 HTTP client.

The paper retrieves from a ColBERTv2 server over 2017 Wikipedia abstracts. Offline we pool the
paragraphs of the HotPotQA contexts we hold (gold and distractor paragraphs, ~15k) and search
them with BM25 (bm25s, English stopwords, Snowball stemming). The index is built once per corpus
and cached on disk under a key that hashes the corpus and the tokenizer settings, so a changed
corpus never reuses a stale index. Programs are deep-copied per candidate; a retriever is
read-only, so every copy shares the same one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlencode
from urllib.request import urlopen

import bm25s
import numpy as np
import Stemmer

# Part of the cache key: changing how text is tokenized must invalidate cached indexes.
TOKENIZER = "bm25s/en-stopwords/snowball-english/v1"


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


class Retriever(ABC):
    """Finds the k passages that best match a query; read-only, so deep copies share it."""

    @abstractmethod
    def search(self, query: str, k: int) -> list[Passage]:
        """Best first; fewer than k when fewer match."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Retriever:
        return self


def default_cache_dir() -> Path:
    """Beside the database and the LM cache: $BT_HOME, else ./bt_data."""
    return Path(os.environ.get("BT_HOME", Path.cwd() / "bt_data")).expanduser() / "retrieval"


class BM25Retriever(Retriever):
    def __init__(self, passages: Sequence[Passage], cache_dir: Path | None = None) -> None:
        if not passages:
            raise ValueError("BM25 needs at least one passage to index")
        self.passages = list(passages)
        self.index_dir = (cache_dir or default_cache_dir()) / f"bm25-{corpus_key(self.passages)}"
        self._stemmer = Stemmer.Stemmer("english")
        self._lock = threading.Lock()  # PyStemmer objects are not thread-safe
        self._bm25 = _load_or_build(self.passages, self.index_dir, self._stemmer)

    def search(self, query: str, k: int) -> list[Passage]:
        with self._lock:
            tokens = _tokenize([query], self._stemmer, return_ids=False)[0]
        ids = self._bm25.get_tokens_ids(tokens)
        if not ids:
            return []
        scores = self._bm25.get_scores_from_ids(ids)
        top = np.argsort(-scores, kind="stable")[:k]
        return [self.passages[i] for i in top if scores[i] > 0]


def corpus_key(passages: Sequence[Passage]) -> str:
    digest = hashlib.sha256(TOKENIZER.encode())
    for p in passages:
        digest.update(json.dumps([p.title, p.text]).encode())
    return digest.hexdigest()[:16]


def _tokenize(texts: list[str], stemmer: Stemmer.Stemmer, return_ids: bool) -> Any:
    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, return_ids=return_ids,
                          show_progress=False)


def _load_or_build(passages: list[Passage], index_dir: Path, stemmer: Stemmer.Stemmer) -> bm25s.BM25:
    if index_dir.is_dir():
        return bm25s.BM25.load(str(index_dir), show_progress=False)
    bm25 = bm25s.BM25()
    texts = [f"{p.title} | {p.text}" for p in passages]
    bm25.index(_tokenize(texts, stemmer, return_ids=True), show_progress=False)
    _save_atomically(bm25, index_dir)
    return bm25


def _save_atomically(bm25: bm25s.BM25, index_dir: Path) -> None:
    """Write to a temporary folder, then rename: a concurrent reader never sees half an index."""
    index_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=index_dir.parent, prefix=".building-"))
    bm25.save(str(tmp), show_progress=False)
    try:
        tmp.rename(index_dir)
    except OSError:  # another process finished the same index first
        shutil.rmtree(tmp, ignore_errors=True)


class ColBERTv2(Retriever):
    """A ColBERTv2 server queried as DSPy does: GET url?query=..&k=.. -> {"topk": [{"text": "Title | body"}]}."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self.timeout_s = timeout_s

    def search(self, query: str, k: int) -> list[Passage]:
        with urlopen(f"{self.url}?{urlencode({'query': query, 'k': k})}", timeout=self.timeout_s) as response:
            hits = json.load(response)["topk"][:k]
        return [split_title(hit["text"]) for hit in hits]


def split_title(text: str) -> Passage:
    """Wikipedia-abstract servers prefix each passage with its title and ' | '."""
    title, sep, body = text.partition(" | ")
    return Passage(title.strip(), body.strip()) if sep else Passage("", text.strip())


__all__ = ["BM25Retriever", "ColBERTv2", "Passage", "Retriever", "corpus_key", "default_cache_dir",
           "split_title"]
