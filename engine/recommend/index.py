"""Top-k items by inner product with a user (or item) vector, with FAISS.

ALS scores are dot products, and inner-product IVF / HNSW index ALS factors badly (the item
norms vary a lot: popular items are long vectors).  So the index uses the standard
inner-product → L2 reduction: every item gets one extra coordinate ``sqrt(M² - ‖v‖²)`` (``M``
the largest item norm), queries get ``0``; then ``‖q - v'‖² = ‖q‖² + M² - 2 q·v``, and the
nearest items in L2 are exactly the largest inner products.

* small catalogues (< ``FLAT_MAX_ITEMS``): ``IndexIDMap(IndexFlatL2)``, exact;
* larger: ``IndexIVFFlat`` with ``nlist ≈ 4·√n``.  IVF stores the ids itself (no IDMap).
  ``nprobe`` is tuned at build time on sample queries (user factors): the smallest value whose
  recall@d against brute force reaches ``target_recall``, for each depth d in ``DEPTHS``.
  The depth-10 value is the index's own ``nprobe`` (saved in the FAISS file); the table goes
  to the ``.json`` beside it.

Ids are item positions (int64).  Returned scores are the true inner products, recomputed from
the item factors (never L2 distances).  Filters are applied inside the search with FAISS id
selectors (``SearchParametersIVF(sel=..., nprobe=...)`` per call, nothing shared mutated).
Excluding m ids means the answer lies up to k + m deep in the unfiltered ranking, so a filtered
IVF search probes as many lists as its depth needs (measured on 50k items: recall@10 0.998
excluding 50 of a shopper's top 100, 0.935 with the depth-10 nprobe).  A small allow-list is
scored exactly with numpy instead (cheaper than a scan, and IVF would miss allowed items outside
the probed lists).

FAISS runs on OpenMP: call ``single_thread()`` once when a serving replica starts (on 2 cores,
more threads per request only spin and contend).  Nothing is set at import time.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Kind = Literal["auto", "flat", "ivf"]

FLAT_MAX_ITEMS = 20_000  # flat search, 1 thread, 64 factors: ~140 µs at 20k items, ~300 µs at 50k
TARGET_RECALL = 0.97  # the bar is 0.95 on live queries; 0.02 margin for tuning-sample noise
TUNING_QUERIES = 256
DEPTHS = (10, 20, 40, 80, 160)  # nprobe is tuned for recall@depth at each of these
NPROBE_STEPS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
EXACT_ALLOW_MAX = 4096
_MIN_POINTS_PER_CENTROID = 39  # below this FAISS' k-means warns and clusters poorly


def single_thread() -> None:
    """One OpenMP thread for FAISS on the request path (call once per replica at start)."""
    faiss.omp_set_num_threads(1)


def augment_items(item_factors: F32) -> F32:
    """Items with the extra coordinate ``sqrt(M² - ‖v‖²)`` (float32, C-contiguous)."""
    norms2 = np.einsum("ij,ij->i", item_factors, item_factors, dtype=np.float64)
    top = float(norms2.max()) if norms2.size else 0.0
    extra = np.sqrt(np.maximum(top - norms2, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([item_factors, extra[:, None]]), dtype=np.float32)


def augment_queries(queries: F32) -> F32:
    """Queries (2-d) with a zero extra coordinate."""
    pad = np.zeros((queries.shape[0], 1), dtype=np.float32)
    return np.ascontiguousarray(np.hstack([queries.astype(np.float32), pad]))


def exact_top_k(item_factors: F32, queries: F32, k: int) -> I64:
    """Brute-force top-``k`` ids by inner product, one row per query (the ground truth)."""
    _, ids = faiss.knn(
        np.ascontiguousarray(queries, dtype=np.float32),
        np.ascontiguousarray(item_factors, dtype=np.float32),
        k,
        metric=faiss.METRIC_INNER_PRODUCT,
    )
    return np.asarray(ids, dtype=np.int64)


def recall_at_k(found: I64, truth: I64) -> float:
    """Mean share of each row of ``truth`` found in the same row of ``found``."""
    hits = sum(
        len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist()))
        for f, t in zip(found, truth, strict=True)
    )
    total = int((truth >= 0).sum())
    return hits / total if total else 1.0


class ItemIndex:
    """A FAISS index over item factors; ``search`` answers top-k by inner product."""

    def __init__(
        self,
        index: Any,
        item_factors: F32,
        *,
        recall: float | None = None,
        nprobe_by_depth: Mapping[int, int] | None = None,
        exact_allow_max: int = EXACT_ALLOW_MAX,
    ) -> None:
        n, f = item_factors.shape
        if index.d != f + 1 or index.ntotal != n:
            raise ValueError(
                f"index holds {index.ntotal} vectors of dimension {index.d}; "
                f"the item factors need {n} of dimension {f + 1}"
            )
        self.index = index
        self.item_factors = item_factors
        self.ivf: Any = faiss.try_extract_index_ivf(index)
        self.recall = recall
        self.exact_allow_max = exact_allow_max
        self.nprobe_by_depth: dict[int, int] = dict(nprobe_by_depth or {})
        if self.ivf is not None and not self.nprobe_by_depth:
            self.nprobe_by_depth = {DEPTHS[0]: int(self.ivf.nprobe)}

    # --- building, saving, loading ---------------------------------------------------------

    @classmethod
    def build(
        cls,
        item_factors: F32,
        *,
        kind: Kind = "auto",
        nlist: int | None = None,
        queries: F32 | None = None,
        target_recall: float = TARGET_RECALL,
        seed: int = 0,
    ) -> ItemIndex:
        """Index ``item_factors`` (float32 [n, f]); ``queries`` (e.g. a sample of user factors)
        tune IVF's ``nprobe`` — without them a sample of the items themselves is used."""
        if item_factors.dtype != np.float32 or item_factors.ndim != 2:
            raise ValueError("item_factors must be a float32 [n_items, factors] array")
        n, f = item_factors.shape
        if n == 0:
            raise ValueError("cannot index an empty catalogue")
        if kind == "auto":
            kind = "flat" if n < FLAT_MAX_ITEMS else "ivf"
        data = augment_items(item_factors)
        ids = np.arange(n, dtype=np.int64)
        if kind == "flat":
            flat = faiss.IndexIDMap(faiss.IndexFlatL2(f + 1))
            flat.add_with_ids(data, ids)
            return cls(flat, item_factors, recall=1.0)
        if kind != "ivf":
            raise ValueError(f"unknown index kind {kind!r}")
        lists = nlist or default_nlist(n)
        quantizer = faiss.IndexFlatL2(f + 1)
        ivf = faiss.IndexIVFFlat(quantizer, f + 1, lists, faiss.METRIC_L2)  # keeps quantizer
        ivf.cp.seed = seed
        ivf.cp.max_points_per_centroid = 64  # k-means on <= 64·nlist points: 1M items stay quick
        ivf.train(data)
        ivf.add_with_ids(data, ids)
        built = cls(ivf, item_factors)
        built.tune(_tuning_queries(item_factors, queries, seed), target_recall)
        return built

    def tune(self, queries: F32, target_recall: float = TARGET_RECALL) -> int:
        """Tune IVF's ``nprobe``: for each depth ``d`` in ``DEPTHS``, the smallest step reaching
        ``target_recall``@d on ``queries``.  The depth-10 value becomes the index's ``nprobe``
        (saved in the FAISS file); a filtered search uses the one for its effective depth
        (``k`` + excluded ids: the best unexcluded items lie deeper).  Returns ``nprobe``."""
        if self.ivf is None:
            self.recall = 1.0
            return 1
        nlist = int(self.ivf.nlist)
        steps = [*(p for p in NPROBE_STEPS if p < nlist), nlist]
        xq = augment_queries(queries)
        depths = [d for d in DEPTHS if d <= len(self)]
        deepest = exact_top_k(self.item_factors, queries, max(depths, default=1))
        table: dict[int, int] = {}
        i = 0
        for depth in depths:
            truth = deepest[:, :depth]  # knn rows are sorted best first
            while True:  # deeper needs no fewer probes: continue from the previous depth's
                _, found = self.index.search(xq, depth, params=_params(None, steps[i]))
                recall = recall_at_k(found, truth)
                if recall >= target_recall or i == len(steps) - 1:
                    break
                i += 1
            table[depth] = steps[i]
            if depth == DEPTHS[0]:
                self.recall = recall
        self.nprobe_by_depth = table or {DEPTHS[0]: nlist}
        self.ivf.nprobe = self.nprobe_by_depth[min(self.nprobe_by_depth)]
        return int(self.ivf.nprobe)

    def nprobe_for(self, depth: int) -> int:
        """The tuned ``nprobe`` for finding the best ``depth`` items (IVF only)."""
        assert self.ivf is not None
        nlist = int(self.ivf.nlist)
        for d, p in sorted(self.nprobe_by_depth.items()):
            if d >= depth:
                return p
        deepest, probes = max(self.nprobe_by_depth.items())  # beyond the table: scale up
        return min(nlist, math.ceil(probes * depth / deepest))

    def save(self, path: Path | str, *, extra: Mapping[str, Any] | None = None) -> None:
        """Write the index (``faiss.write_index``) and its tuning (``<path stem>.json``, with
        ``extra`` keys), each atomically: a temporary file, then rename."""
        path = Path(path)
        info = {**self.info(), **(extra or {})}
        with _replacing(path) as tmp:
            faiss.write_index(self.index, str(tmp))
        with _replacing(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(info, indent=2))

    def info(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "items": len(self),
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "recall": self.recall,
            "nprobe_by_depth": {str(d): p for d, p in sorted(self.nprobe_by_depth.items())},
        }

    @classmethod
    def load(cls, path: Path | str, item_factors: F32) -> ItemIndex:
        """Read an index written by ``save``; ``ValueError`` if it does not fit the factors.
        Without its ``.json`` the filtered searches scale the saved ``nprobe`` with depth."""
        path = Path(path)
        index = cls(faiss.read_index(str(path)), item_factors)
        info = read_info(path)
        if index.ivf is not None and isinstance(info.get("nprobe_by_depth"), dict):
            table = {int(d): int(p) for d, p in info["nprobe_by_depth"].items()}
            if table.get(DEPTHS[0]) == index.nprobe:  # the sidecar belongs to this file
                index.nprobe_by_depth = table
                index.recall = info.get("recall")
        elif index.ivf is None:
            index.recall = 1.0
        return index

    # --- queries ---------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return "flat" if self.ivf is None else "ivf"

    @property
    def nprobe(self) -> int | None:
        return None if self.ivf is None else int(self.ivf.nprobe)

    @property
    def nlist(self) -> int | None:
        return None if self.ivf is None else int(self.ivf.nlist)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(
        self,
        query: F32,
        k: int,
        *,
        exclude: I64 | None = None,
        allow: I64 | None = None,
    ) -> tuple[I64, F32]:
        """The ``k`` items with the largest ``query · item``, best first, as (ids, scores).

        ``exclude``: ids never returned; ``allow``: only these ids may be returned.  Fewer than
        ``k`` results only when fewer items qualify: when IVF's probed lists hold fewer than
        ``k`` qualifying items (filters, small lists), ``nprobe`` doubles for this call until
        they do or every list is probed.
        """
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.item_factors.shape[1]:
            raise ValueError(
                f"query has {q.shape[0]} factors, the model {self.item_factors.shape[1]}"
            )
        k = min(int(k), len(self))
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if allow is not None and allow.size <= self.exact_allow_max:
            return self._exact(q, k, allow, exclude)
        keep_alive: list[Any] = []
        sel = _selector(allow, exclude, keep_alive)
        xq = augment_queries(q[None, :])
        nprobe = None if self.ivf is None else self.nprobe_for(_depth(k, len(self), allow, exclude))
        while True:
            _, labels = self.index.search(xq, k, params=_params(sel, nprobe))
            ids = labels[0][labels[0] >= 0]
            if nprobe is None or ids.size >= k or nprobe >= self.ivf.nlist:
                break
            nprobe = min(2 * nprobe, int(self.ivf.nlist))  # the probed lists ran dry: widen
        scores = self.item_factors[ids] @ q
        order = np.argsort(-scores, kind="stable")  # L2 ties / rounding: order by the true score
        return ids[order].astype(np.int64), scores[order].astype(np.float32)

    def similar(self, item_id: int, k: int, *, exclude: I64 | None = None) -> tuple[I64, F32]:
        """Items with the largest inner product with ``item_id``'s vector (itself excluded)."""
        n = len(self)
        if not 0 <= item_id < n:
            raise IndexError(f"item id {item_id} not in [0, {n})")
        own = np.array([item_id], dtype=np.int64)
        skip = own if exclude is None else np.concatenate([own, exclude.astype(np.int64)])
        return self.search(self.item_factors[item_id], k, exclude=skip)

    def _exact(self, q: F32, k: int, allow: I64, exclude: I64 | None) -> tuple[I64, F32]:
        ids = np.unique(allow.astype(np.int64))
        ids = ids[(ids >= 0) & (ids < len(self))]
        if exclude is not None and exclude.size:
            ids = ids[~np.isin(ids, exclude)]
        if ids.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        scores = self.item_factors[ids] @ q
        if ids.size > k:
            top = np.argpartition(-scores, k - 1)[:k]
            ids, scores = ids[top], scores[top]
        order = np.argsort(-scores, kind="stable")
        return ids[order], scores[order].astype(np.float32)


def default_nlist(n: int) -> int:
    """``4·√n`` lists, but at least ``_MIN_POINTS_PER_CENTROID`` training points per list."""
    return max(1, min(round(4 * math.sqrt(n)), n // _MIN_POINTS_PER_CENTROID))


def _tuning_queries(item_factors: F32, queries: F32 | None, seed: int) -> F32:
    rng = np.random.default_rng(seed)
    pool = item_factors if queries is None or len(queries) == 0 else queries
    if len(pool) > TUNING_QUERIES:
        pool = pool[np.sort(rng.choice(len(pool), TUNING_QUERIES, replace=False))]
    pool = pool[np.abs(pool).sum(axis=1) > 0]  # a zero vector has no meaningful top-k
    return np.ascontiguousarray(pool if len(pool) else item_factors[:1], dtype=np.float32)


def _selector(allow: I64 | None, exclude: I64 | None, keep_alive: list[Any]) -> Any:
    """A FAISS id selector for the filters (None without any).  The SWIG objects reference
    each other by raw pointer, so every one is kept in ``keep_alive`` for the search."""
    sel: Any = None
    if exclude is not None and exclude.size:
        batch = faiss.IDSelectorBatch(np.ascontiguousarray(exclude, dtype=np.int64))
        sel = faiss.IDSelectorNot(batch)
        keep_alive += [batch, sel]
    if allow is not None:
        allowed = faiss.IDSelectorBatch(np.ascontiguousarray(allow, dtype=np.int64))
        keep_alive.append(allowed)
        if sel is not None:
            sel = faiss.IDSelectorAnd(allowed, sel)
            keep_alive.append(sel)
        else:
            sel = allowed
    return sel


def _params(sel: Any, nprobe: int | None) -> Any:
    """Per-call search parameters (nothing shared is mutated: searches may run concurrently)."""
    params: Any = faiss.SearchParameters() if nprobe is None else faiss.SearchParametersIVF()
    if nprobe is not None:
        params.nprobe = nprobe
    if sel is not None:
        params.sel = sel
    return params


def read_info(path: Path) -> dict[str, Any]:
    """The ``.json`` written next to an index file by ``save`` (empty if absent)."""
    side = path.with_suffix(".json")
    if not side.exists():
        return {}
    data = json.loads(side.read_text())
    return data if isinstance(data, dict) else {}


def _depth(k: int, n: int, allow: I64 | None, exclude: I64 | None) -> int:
    """How deep in the unfiltered ranking the best ``k`` qualifying items may lie."""
    depth = k + (0 if exclude is None else int(exclude.size))
    if allow is not None:
        depth = math.ceil(depth * n / max(int(allow.size), 1))
    return min(depth, n)


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary path that replaces ``path`` when the block succeeds."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
