"""Patient retrieval metrics: mAP@R and precision@1.

Packhäuser et al., "Deep learning-based patient re-identification is able to exploit the
biometric nature of medical chest X-ray data", Scientific Reports 12, 14851 (2022): every
query image ranks a gallery by embedding similarity; a gallery image is relevant when it
belongs to the query's patient. mAP@R follows Musgrave et al., "A Metric Learning Reality
Check", ECCV 2020: with R the number of relevant gallery images of a query,
``AP@R = (1/R) * sum_{k<=R} P(k) * rel(k)``.

For PriCheXy-Net the queries are anonymized test images and the gallery the real test
images. The real source of an anonymized query is trivially similar to it and says nothing
about re-identifying *other* images of the patient, so it is excluded by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .verification import _as_1d, _as_numpy

__all__ = ["RetrievalResult", "retrieval_metrics"]

_SIMILARITIES = ("euclidean", "cosine", "dot")


@dataclass
class RetrievalResult:
    """Result of :func:`retrieval_metrics` (fractions in [0, 1]).

    Attributes:
        map_at_r: mean AP@R over the evaluated queries.
        precision_at_1: fraction of evaluated queries whose top-ranked gallery image is relevant.
        n_queries: queries evaluated (at least one relevant gallery image).
        n_queries_without_relevant: queries left out because no gallery image was relevant
            after exclusions (e.g. patients with a single image).
        per_query_map_at_r: ``(Q,)`` AP@R per query, NaN for queries left out.
        per_query_precision_at_1: ``(Q,)`` 0/1 per query, NaN for queries left out.
    """

    map_at_r: float
    precision_at_1: float
    n_queries: int
    n_queries_without_relevant: int
    per_query_map_at_r: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    per_query_precision_at_1: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


def _as_2d_emb(x: Any, name: str) -> np.ndarray:
    arr = _as_numpy(x, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (N, D) embeddings, got shape {tuple(arr.shape)}.")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def _similarity(q: np.ndarray, g: np.ndarray, g_sq: np.ndarray, similarity: str) -> np.ndarray:
    if similarity == "euclidean":
        # negative squared L2 distance: same order as negative L2 distance
        d2 = (q * q).sum(1)[:, None] + g_sq[None, :] - 2.0 * q @ g.T
        return -np.maximum(d2, 0.0)
    if similarity == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return qn @ gn.T
    return q @ g.T


def retrieval_metrics(
    query_emb: Any | None,
    query_ids: Any,
    gallery_emb: Any | None = None,
    gallery_ids: Any | None = None,
    *,
    scores: Any | None = None,
    similarity: str = "euclidean",
    exclude_self: bool = True,
    query_source_index: Any | None = None,
    exclude: Any | None = None,
    chunk_size: int = 256,
) -> RetrievalResult:
    """mAP@R and precision@1 of patient retrieval (Packhäuser et al., Sci. Rep. 2022).

    Every query ranks all gallery images by similarity, highest first. Among equal scores,
    irrelevant images are ranked first (pessimistic ties), so degenerate embeddings (e.g. all
    identical) cannot fake re-identification. Queries without any relevant gallery image are
    left out of both means and counted in ``n_queries_without_relevant``; precision@1 is
    averaged over the same queries as mAP@R.

    Excluding a query's own source (``exclude_self=True``, the default): the gallery index of
    the real image each query was made from is ``query_source_index[i]`` (negative = none); when
    that is not given, query ``i`` is taken to come from gallery image ``i``, which requires as
    many queries as gallery images with matching ids (e.g. anonymized and real copies of the
    same test list, or the same set as query and gallery). ``exclude`` removes further
    (query, gallery) pairs.

    Args:
        query_emb: ``(Q, D)`` query embeddings, or ``None`` when ``scores`` is given.
        query_ids: ``(Q,)`` patient ids of the queries (any comparable dtype).
        gallery_emb: ``(G, D)`` gallery embeddings; ``None`` = the queries themselves.
        gallery_ids: ``(G,)`` patient ids of the gallery; ``None`` = ``query_ids``.
        scores: optional precomputed ``(Q, G)`` similarity matrix (higher = more similar),
            used instead of the embeddings.
        similarity: ``"euclidean"`` (negative L2 distance, the default), ``"cosine"`` or ``"dot"``.
        exclude_self: drop each query's own source image from its gallery.
        query_source_index: ``(Q,)`` gallery index of each query's source, negative for none.
        exclude: optional ``(Q, G)`` boolean mask of further pairs to drop.
        chunk_size: queries ranked at once (memory ~ ``chunk_size * G * 24`` bytes).

    Returns:
        :class:`RetrievalResult`.

    Raises:
        ValueError: bad shapes, conflicting arguments, or no query with a relevant image.
    """
    if similarity not in _SIMILARITIES:
        raise ValueError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}.")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    q_ids = _as_1d(query_ids, "query_ids")
    g_ids = q_ids if gallery_ids is None else _as_1d(gallery_ids, "gallery_ids")
    n_q, n_g = q_ids.shape[0], g_ids.shape[0]
    if n_q == 0 or n_g == 0:
        raise ValueError("retrieval needs at least one query and one gallery image.")

    s_mat = q = g = g_sq = None
    if scores is not None:
        if query_emb is not None or gallery_emb is not None:
            raise ValueError("give either embeddings or a precomputed scores matrix, not both.")
        s_mat = _as_numpy(scores, "scores").astype(np.float64)
        if s_mat.shape != (n_q, n_g):
            raise ValueError(f"scores must have shape (Q, G) = {(n_q, n_g)}, got {tuple(s_mat.shape)}.")
        if not np.all(np.isfinite(s_mat)):
            raise ValueError("scores contain NaN or infinite values.")
    else:
        if query_emb is None:
            raise ValueError("query_emb is required unless scores is given.")
        q = _as_2d_emb(query_emb, "query_emb")
        g = q if gallery_emb is None else _as_2d_emb(gallery_emb, "gallery_emb")
        if q.shape[0] != n_q:
            raise ValueError(f"query_emb has {q.shape[0]} rows but query_ids has {n_q}.")
        if g.shape[0] != n_g:
            raise ValueError(f"gallery_emb has {g.shape[0]} rows but gallery_ids has {n_g}.")
        if q.shape[1] != g.shape[1]:
            raise ValueError(f"query and gallery embeddings differ in size: {q.shape[1]} vs {g.shape[1]}.")
        g_sq = (g * g).sum(1)

    source = None
    if query_source_index is not None:
        if not exclude_self:
            raise ValueError("query_source_index is only used with exclude_self=True.")
        source = _as_1d(query_source_index, "query_source_index").astype(np.int64)
        if source.shape[0] != n_q:
            raise ValueError(f"query_source_index must have {n_q} entries, got {source.shape[0]}.")
        if np.any(source >= n_g):
            raise ValueError(f"query_source_index holds indices >= the gallery size {n_g}.")
        has = source >= 0
        if np.any(q_ids[has] != g_ids[source[has]]):
            raise ValueError("query_source_index points to gallery images of another patient.")
    elif exclude_self:
        if n_q != n_g:
            raise ValueError(
                "exclude_self=True without query_source_index assumes query i comes from gallery image i, "
                f"but there are {n_q} queries and {n_g} gallery images; pass query_source_index "
                "or exclude_self=False."
            )
        if np.any(q_ids != g_ids):
            raise ValueError(
                "exclude_self=True without query_source_index assumes query i comes from gallery image i, "
                "but their patient ids differ; pass query_source_index or exclude_self=False."
            )
        source = np.arange(n_q)
    excl = None
    if exclude is not None:
        excl = _as_numpy(exclude, "exclude").astype(bool)
        if excl.shape != (n_q, n_g):
            raise ValueError(f"exclude must have shape (Q, G) = {(n_q, n_g)}, got {tuple(excl.shape)}.")

    ap = np.full(n_q, np.nan)
    p1 = np.full(n_q, np.nan)
    chunk = int(chunk_size)
    for start in range(0, n_q, chunk):
        stop = min(start + chunk, n_q)
        rows = np.arange(start, stop)
        s = s_mat[start:stop].copy() if s_mat is not None else _similarity(q[start:stop], g, g_sq, similarity)
        rel = q_ids[start:stop, None] == g_ids[None, :]
        drop = np.zeros_like(rel) if excl is None else excl[start:stop].copy()
        if source is not None:
            has = source[start:stop] >= 0
            drop[np.flatnonzero(has), source[start:stop][has]] = True
        s[drop] = -np.inf
        rel &= ~drop
        r = rel.sum(1)
        ok = r > 0
        if not ok.any():
            continue
        s, rel, r, rows = s[ok], rel[ok], r[ok], rows[ok]
        # primary key: descending score; secondary: irrelevant (False) first among ties
        order = np.lexsort((rel, -s), axis=-1)
        top = np.take_along_axis(rel, order[:, : int(r.max())], axis=1)
        ranks = np.arange(1, top.shape[1] + 1)
        prec = np.cumsum(top, axis=1) / ranks
        within = ranks[None, :] <= r[:, None]
        ap[rows] = (prec * top * within).sum(1) / r
        p1[rows] = top[:, 0]

    evaluated = np.isfinite(ap)
    n_eval = int(evaluated.sum())
    if n_eval == 0:
        raise ValueError("no query has a relevant gallery image (after exclusions); retrieval is undefined.")
    return RetrievalResult(
        map_at_r=float(ap[evaluated].mean()),
        precision_at_1=float(p1[evaluated].mean()),
        n_queries=n_eval,
        n_queries_without_relevant=n_q - n_eval,
        per_query_map_at_r=ap,
        per_query_precision_at_1=p1,
    )
