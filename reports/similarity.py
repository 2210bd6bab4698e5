"""Nearest tracks by embedding: cosine similarity and the k best, over a catalogue read in chunks.

Pure numerics, no storage: reports/similar.py feeds it the `current` table a chunk at a time, and
TopK keeps only k candidates between chunks, so memory is one chunk whatever the catalogue's size.
Ranking is deterministic: higher similarity first, and among equal similarities the earlier row
(what a stable sort gives), so a chunked search returns exactly what one over the whole would.
"""
from __future__ import annotations

import numpy as np


def normalise(rows: np.ndarray) -> np.ndarray:
    """Unit vectors (L2): (n, d) or (d,) float -> the same shape, float32. A zero row stays zero
    (its similarity to anything is 0), rather than NaN."""
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def cosine(query: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row to the query: (d,), (n, d) -> (n,) float32 in [-1, 1]; or of
    each row to each of several queries: (q, d), (n, d) -> (n, q). 0 for a zero row or a zero query.
    The rows are not normalised as a copy (a chunk is ~50 MB): their dot products are divided by
    their norms."""
    query = normalise(query)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    dots = embeddings @ query.T
    norms = np.sqrt(np.einsum("ij,ij->i", embeddings, embeddings))
    norms = norms[:, None] if dots.ndim == 2 else norms
    similarity = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return np.clip(similarity, -1.0, 1.0, out=similarity)  # rounding can land a hair past 1


def best(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first, ties in index order (as a stable argsort of
    -scores): (n,) -> (min(k, n),) int64. O(n) with argpartition, plus a sort of the candidates."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64)
    if k < n:
        # Every score equal to the k-th highest is a candidate: which of tied rows argpartition keeps
        # is arbitrary, and the ranking must not depend on how the catalogue was cut into chunks.
        kth = np.partition(scores, n - k)[n - k]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(n)
    order = np.lexsort((candidates, -scores[candidates]))  # last key first: score, then index
    return candidates[order[:k]].astype(np.int64)


class TopK:
    """The k best scores over chunks offered one after another, each row named by an id (int64) that
    grows from chunk to chunk (its place in the table). Holds k candidates between chunks; indices
    and scores equal best() over all chunks concatenated, with ids for positions."""

    def __init__(self, k: int):
        self.k = k
        self.indices = np.zeros(0, np.int64)  # (<= k,) ids, best first
        self.scores = np.zeros(0, np.float32)  # (<= k,)

    def add(self, scores: np.ndarray, ids: np.ndarray) -> None:
        """Offer a chunk: scores (m,) of the rows ids (m,) int64, ascending and above every id offered
        before (so that ties keep the table's order)."""
        local = best(scores, self.k)
        indices = np.concatenate([self.indices, np.asarray(ids, np.int64)[local]])
        merged = np.concatenate([self.scores, scores[local].astype(np.float32)])
        keep = np.lexsort((indices, -merged))[:self.k]
        self.indices, self.scores = indices[keep], merged[keep]
