"""BM25 over the HotPotQA passage pool: index build time against a cached load, queries per second,
and recall@k of the gold supporting titles when each dev question itself is the query.

Run: `python benchmarks/retrieval.py` from the repo root (BT_DATA_DIR defaults to ../shared/data).
The recall figures are the ceiling a first hop gets from copying the question; the program's
query modules have to beat them on the second hop.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bt_core.retrieval import BM25Retriever
from bt_core.tasks.hotpotqa import passage_pool, source_rows

REPO = Path(__file__).resolve().parents[1]

KS = (1, 3, 5, 10)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def recall_at(retriever: BM25Retriever, rows: list[dict]) -> tuple[dict[int, float], float]:
    """Mean share of gold titles in the top k, per k, and the seconds all searches took."""
    totals = dict.fromkeys(KS, 0.0)
    start = time.perf_counter()
    for row in rows:
        gold = {title for title, _ in row["supporting_facts"]}
        found = [p.title for p in retriever.search(row["question"], max(KS))]
        for k in KS:
            totals[k] += len(gold & set(found[:k])) / len(gold)
    return {k: v / len(rows) for k, v in totals.items()}, time.perf_counter() - start


def main() -> None:
    data_dir = os.environ.setdefault("BT_DATA_DIR", str(REPO.parent / "shared" / "data"))
    (rows,), read_s = timed(lambda: source_rows(data_dir))  # the offline dev file
    pool = passage_pool(rows)
    with tempfile.TemporaryDirectory() as cache:
        _, build_s = timed(lambda: BM25Retriever(pool, Path(cache)))
        retriever, load_s = timed(lambda: BM25Retriever(pool, Path(cache)))
    recall, search_s = recall_at(retriever, rows)
    print(f"corpus: {len(pool)} passages from {len(rows)} questions (read in {read_s:.2f} s)")
    print(f"index build {build_s:.2f} s, cached load {load_s:.3f} s ({build_s / load_s:.0f}x faster)")
    print(f"search: {len(rows) / search_s:.0f} queries/s (k={max(KS)}, one thread)")
    print("recall of gold titles, question as query: "
          + ", ".join(f"@{k} {recall[k]:.3f}" for k in KS))


if __name__ == "__main__":
    main()
