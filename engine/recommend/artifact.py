"""A trained recommendation model, loaded from the directory training writes.

Files (the contract with ``training/``):

``model.json``
    ``{"version", "kind": "als", "factors", "regularization", "alpha", "event_weights", ...}``
``items.json`` / ``item_factors.npy``
    SKUs (position = item id) and their float32 ``[n_items, f]`` factors
``users.json`` / ``user_factors.npy``
    customer ids and their float32 ``[n_users, f]`` factors
``bought_together.npz``
    ``ids`` int64 ``[n_items, K]`` (-1 padded) and ``scores`` float32 ``[n_items, K]``
``popularity.npy``
    float32 ``[n_items]``

Scores are dot products user . item (implicit's convention).  The FAISS index is derived data:
``index.faiss`` is loaded when present and consistent with the item factors (``index.json``
beside it records their digest), otherwise built in memory and saved next to the files
(atomically; a read-only directory only costs the build at every load).

Every problem of a broken artifact is collected, then one ``RecModelError`` names each file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import CartwiseError
from engine.recommend.foldin import FoldIn
from engine.recommend.index import ItemIndex, Kind, read_info

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

META = "model.json"
ITEMS = "items.json"
ITEM_FACTORS = "item_factors.npy"
USERS = "users.json"
USER_FACTORS = "user_factors.npy"
BOUGHT_TOGETHER = "bought_together.npz"
POPULARITY = "popularity.npy"
ITEM_IDF = "item_idf.npy"  # bm25 / tfidf models only
# what training writes and a registry version must hold (the index is built at first load)
FILES = (META, ITEMS, ITEM_FACTORS, USERS, USER_FACTORS, BOUGHT_TOGETHER, POPULARITY)
INDEX = "index.faiss"
INDEX_META = "index.json"


class RecModelError(CartwiseError):
    """The recommendation model directory is missing files or holds inconsistent data."""

    code = "model_error"


@dataclass(frozen=True, eq=False)
class RecModel:
    directory: Path
    version: str
    meta: dict[str, Any]
    skus: list[str]
    customers: list[str]
    item_factors: F32
    user_factors: F32
    popularity: F32
    bought_together_ids: I64
    bought_together_scores: F32
    index: ItemIndex
    foldin: FoldIn
    idf: F32 | None  # per item, for a bm25 / tfidf model (events are re-weighted like training)
    _item_ids: dict[str, int] = field(repr=False)
    _user_ids: dict[str, int] = field(repr=False)

    @classmethod
    def load(cls, directory: Path | str, *, index_kind: Kind = "auto") -> RecModel:
        """Load and check a model directory; raises ``RecModelError`` naming every problem."""
        directory = Path(directory)
        if not directory.is_dir():
            raise RecModelError(f"recommendation model directory {directory} does not exist")
        files = _Files(directory)
        meta = files.meta()
        skus = files.names(ITEMS)
        customers = files.names(USERS)
        items = files.array(ITEM_FACTORS, np.float32, 2)
        users = files.array(USER_FACTORS, np.float32, 2)
        popularity = files.array(POPULARITY, np.float32, 1)
        bt_ids, bt_scores = files.bought_together()
        files.check_shapes(meta, skus, customers, items, users, popularity, bt_ids, bt_scores)
        files.raise_if_broken()
        assert meta is not None and skus is not None and customers is not None
        assert items is not None and users is not None and popularity is not None
        assert bt_ids is not None and bt_scores is not None
        return cls(
            directory=directory,
            version=str(meta["version"]),
            meta=meta,
            skus=skus,
            customers=customers,
            item_factors=items,
            user_factors=users,
            popularity=popularity,
            bought_together_ids=bt_ids,
            bought_together_scores=bt_scores,
            index=load_or_build_index(directory, items, users, kind=index_kind),
            foldin=FoldIn(items, float(meta["regularization"]), float(meta["alpha"])),
            idf=_idf(directory, meta, len(skus)),
            _item_ids={s: i for i, s in enumerate(skus)},
            _user_ids={c: i for i, c in enumerate(customers)},
        )

    @property
    def n_items(self) -> int:
        return len(self.skus)

    @property
    def event_weights(self) -> dict[str, float]:
        """Interaction weight per event type (``view``, ``add_to_cart``, ``purchase``, ...)."""
        return {str(k): float(v) for k, v in self.meta.get("event_weights", {}).items()}

    def item_id(self, sku: str) -> int | None:
        return self._item_ids.get(sku)

    def sku(self, item_id: int) -> str:
        if not 0 <= item_id < len(self.skus):
            raise IndexError(f"item id {item_id} not in [0, {len(self.skus)})")
        return self.skus[item_id]

    def user_vector(self, customer_id: str) -> F32 | None:
        """The trained vector of a known customer (None for one the model has not seen)."""
        row = self._user_ids.get(customer_id)
        return None if row is None else self.user_factors[row]

    # --- what the recommender asks (engine.recommend.service.RecModelLike) ---------------------
    def fold_in(self, item_ids: I64, weights: npt.NDArray[np.float64], base: F32 | None) -> F32:
        """The shopper's vector with recent interactions folded in (see ``FoldIn.blend``),
        the event weights first re-weighted as training re-weighted the matrix (bm25 /
        tfidf: ``implicit.nearest_neighbours``), so a folded-in row is on the model's scale."""
        return self.foldin.blend(item_ids, self.reweight(item_ids, weights), base=base)

    def reweight(self, item_ids: I64, weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        kind = self.meta.get("weighting", "none")
        if self.idf is None or kind == "none" or not len(item_ids):
            return weights
        idf = self.idf[item_ids].astype(np.float64)
        if kind == "tfidf":
            out = np.sqrt(weights) * idf
        else:  # bm25
            p = self.meta["weighting_params"]
            k1, b = float(p["K1"]), float(p["B"])
            norm = (1.0 - b) + b * weights.sum() / float(p["average_length"])
            out = weights * (k1 + 1.0) / (k1 * norm + weights) * idf
        return np.maximum(out, 1e-6)

    def search(
        self, query: F32, k: int, *, exclude: I64 | None, allow: I64 | None
    ) -> tuple[I64, F32]:
        return self.index.search(query, k, exclude=exclude, allow=allow)

    def similar(self, item_id: int, k: int, *, exclude: I64 | None) -> tuple[I64, F32]:
        return self.index.similar(item_id, k, exclude=exclude)

    def bought_together(self, item_id: int) -> tuple[I64, F32]:
        ids = self.bought_together_ids[item_id]
        keep = ids >= 0
        return ids[keep], self.bought_together_scores[item_id][keep]

    def popular(self, n: int) -> tuple[I64, F32]:
        """The ``n`` most popular items of the training data's last days, best first."""
        order = np.argsort(-self.popularity, kind="stable")[:n].astype(np.int64)
        return order, self.popularity[order]


def load_or_build_index(
    directory: Path, item_factors: F32, user_factors: F32, *, kind: Kind = "auto"
) -> ItemIndex:
    """``index.faiss`` if it matches ``item_factors`` (and ``kind``), else a fresh build that is
    saved next to the model files (with ``index.json``: its tuning and the factors' digest)."""
    path = directory / INDEX
    digest = factors_digest(item_factors)
    if path.exists():
        try:
            index = ItemIndex.load(path, item_factors)
            if read_info(path).get("item_factors_digest", digest) != digest:
                log.warning("%s was built for other item factors; rebuilding it", path)
            elif kind not in ("auto", index.kind):
                log.info("%s is %s, %s was asked for; rebuilding it", path, index.kind, kind)
            else:
                return index
        except (RuntimeError, ValueError, OSError) as exc:  # faiss raises RuntimeError
            log.warning("cannot use %s (%s); rebuilding it", path, exc)
    index = ItemIndex.build(item_factors, kind=kind, queries=user_factors)
    try:
        index.save(path, extra={"item_factors_digest": digest})
    except OSError as exc:
        log.warning("cannot save %s (%s); the index stays in memory", path, exc)
    return index


def factors_digest(item_factors: F32) -> str:
    """A content digest of the factors (shape, dtype and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{item_factors.dtype.str}{item_factors.shape}".encode())
    h.update(np.ascontiguousarray(item_factors).data)
    return h.hexdigest()


class _Files:
    """Reads the model files, collecting every problem as ``{"file", "problem"}``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.problems: list[dict[str, str]] = []

    def problem(self, name: str, text: str) -> None:
        self.problems.append({"file": name, "problem": text})

    def raise_if_broken(self) -> None:
        if self.problems:
            detail = "; ".join(f"{p['file']}: {p['problem']}" for p in self.problems)
            raise RecModelError(
                f"recommendation model {self.directory} is broken: {detail}", items=self.problems
            )

    def _path(self, name: str) -> Path | None:
        path = self.directory / name
        if not path.is_file():
            self.problem(name, "missing")
            return None
        return path

    def _json(self, name: str) -> Any:
        path = self._path(name)
        if path is None:
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.problem(name, f"not readable JSON ({exc})")
            return None

    def meta(self) -> dict[str, Any] | None:
        meta = self._json(META)
        if meta is None:
            return None
        if not isinstance(meta, dict):
            self.problem(META, "must be a JSON object")
            return None
        ok = True
        if meta.get("kind") != "als":
            self.problem(META, f"kind must be 'als', got {meta.get('kind')!r}")
            ok = False
        if not isinstance(meta.get("version"), str | int) or meta.get("version") == "":
            self.problem(META, "version is missing")
            ok = False
        reg, alpha = meta.get("regularization"), meta.get("alpha")
        if not (isinstance(reg, int | float) and _is_number(reg) and reg >= 0):
            self.problem(META, f"regularization must be a number >= 0, got {reg!r}")
            ok = False
        if not (isinstance(alpha, int | float) and _is_number(alpha) and alpha > 0):
            self.problem(META, f"alpha must be a number > 0, got {alpha!r}")
            ok = False
        weights = meta.get("event_weights", {})
        if not isinstance(weights, Mapping) or not all(_is_number(v) for v in weights.values()):
            self.problem(META, "event_weights must map event types to numbers")
            ok = False
        return meta if ok else None

    def names(self, name: str) -> list[str] | None:
        values = self._json(name)
        if values is None:
            return None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            self.problem(name, "must be a JSON list of strings")
            return None
        if len(set(values)) != len(values):
            self.problem(name, f"{len(values) - len(set(values))} duplicate entries")
            return None
        return values

    def _load(self, name: str) -> Any:
        path = self._path(name)
        if path is None:
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            self.problem(name, f"not a readable numpy file ({exc})")
            return None

    def array(self, name: str, dtype: type[np.generic], ndim: int) -> Any:
        arr = self._load(name)
        if arr is None:
            return None
        return self._check_array(name, arr, dtype, ndim)

    def _check_array(self, name: str, arr: Any, dtype: type[np.generic], ndim: int) -> Any:
        if not isinstance(arr, np.ndarray):
            self.problem(name, "must hold one array")
            return None
        if arr.dtype != dtype or arr.ndim != ndim:
            want = f"{np.dtype(dtype).name} with {ndim} dimension(s)"
            self.problem(name, f"must be {want}, got {arr.dtype.name} of shape {arr.shape}")
            return None
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            self.problem(name, "holds NaN or infinite values")
            return None
        return np.ascontiguousarray(arr)

    def bought_together(self) -> tuple[Any, Any]:
        archive = self._load(BOUGHT_TOGETHER)
        if archive is None:
            return None, None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            self.problem(BOUGHT_TOGETHER, "must be an .npz archive with 'ids' and 'scores'")
            return None, None
        with archive:
            missing = {"ids", "scores"} - set(archive.files)
            if missing:
                self.problem(BOUGHT_TOGETHER, f"lacks {', '.join(sorted(missing))}")
                return None, None
            try:
                ids, scores = archive["ids"], archive["scores"]
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                self.problem(BOUGHT_TOGETHER, f"not readable ({exc})")
                return None, None
        ids = self._check_array(f"{BOUGHT_TOGETHER}[ids]", ids, np.int64, 2)
        scores = self._check_array(f"{BOUGHT_TOGETHER}[scores]", scores, np.float32, 2)
        return ids, scores

    def check_shapes(
        self,
        meta: dict[str, Any] | None,
        skus: list[str] | None,
        customers: list[str] | None,
        items: Any,
        users: Any,
        popularity: Any,
        bt_ids: Any,
        bt_scores: Any,
    ) -> None:
        n = len(skus) if skus is not None else None
        f = items.shape[1] if items is not None else None
        if n is not None and items is not None and items.shape[0] != n:
            self.problem(ITEM_FACTORS, f"has {items.shape[0]} rows, {ITEMS} lists {n} items")
        if n == 0:
            self.problem(ITEMS, "lists no items")
        if customers is not None and users is not None and users.shape[0] != len(customers):
            self.problem(
                USER_FACTORS, f"has {users.shape[0]} rows, {USERS} lists {len(customers)} users"
            )
        if f is not None and users is not None and users.shape[1] != f:
            self.problem(USER_FACTORS, f"has {users.shape[1]} factors, {ITEM_FACTORS} has {f}")
        if meta is not None and f is not None and meta.get("factors", f) != f:
            self.problem(META, f"factors is {meta.get('factors')}, {ITEM_FACTORS} has {f}")
        if n is not None and popularity is not None and popularity.shape != (n,):
            self.problem(POPULARITY, f"has shape {popularity.shape}, expected ({n},)")
        if bt_ids is not None and bt_scores is not None and bt_ids.shape != bt_scores.shape:
            self.problem(BOUGHT_TOGETHER, f"ids {bt_ids.shape} and scores {bt_scores.shape} differ")
        if n is not None and bt_ids is not None:
            if bt_ids.shape[0] != n:
                self.problem(BOUGHT_TOGETHER, f"ids has {bt_ids.shape[0]} rows, expected {n}")
            if bt_ids.size and (bt_ids.min() < -1 or bt_ids.max() >= n):
                self.problem(BOUGHT_TOGETHER, f"ids must be -1 (padding) or in [0, {n})")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _idf(directory: Path, meta: Mapping[str, Any], n_items: int) -> F32 | None:
    if meta.get("weighting", "none") == "none":
        return None
    path = directory / ITEM_IDF
    if not path.exists():
        raise RecModelError(f"{path.name}: a {meta['weighting']} model needs it for fold-in")
    idf = np.load(path)
    if idf.shape != (n_items,):
        raise RecModelError(f"{path.name}: shape {idf.shape}, expected ({n_items},)")
    return np.asarray(idf, dtype=np.float32)
