"""A user vector from a shopper's interactions at request time (implicit-ALS fold-in).

Convention, mirrored from implicit 0.7.3 (``implicit/cpu/als.py::recalculate_user`` and
``_als._least_squares``, which ``recommend(userid, user_items, recalculate_user=True)`` calls):

* the matrix value of an interaction *is* the confidence once multiplied by ``alpha``:
  ``c = alpha * w`` (not ``1 + alpha * w``: implicit multiplies the matrix by ``alpha`` when
  ``alpha != 1`` and uses it as is); items not interacted with have ``c = 1, p = 0``;
* ``A = YᵀY + λI + Σ (|c| - 1) y yᵀ`` and ``b = Σ_{c > 0} c y`` over the interacted items; a
  negative value is a dislike (counts in ``A`` with ``|c|``, not in ``b``);
* ``x = A⁻¹ b``; no interactions gives the zero vector;
* repeated items add up (a CSR matrix built from (row, col, value) triples sums duplicates).

One deliberate difference: weights of exactly 0 are dropped (implicit would count a stored zero
as ``c - 1 = -1``, which is an artefact of sparse storage, not a signal).

Known shoppers: implicit recomputes a known user from the *full* history.  Serving keeps no
history, only the user's stored (trained) vector, so ``user_vector(..., base=stored)`` blends the
two: ``x = s·x_recent + (1 - s)·x_stored`` with ``s = n / (n + base_strength)`` where ``n`` is the
number of distinct recent items.  Scores are linear in ``x``, so this is the same as blending the
scores of the short-term and the long-term profile: one recent view barely moves a long-standing
profile (s ≈ 0.17 with the default strength 5), twenty recent items mostly replace it (s = 0.8).
No recent items gives the stored vector unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from engine.errors import ValidationError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEFAULT_BASE_STRENGTH = 5.0
_CHUNK = 65_536


class FoldIn:
    """Solves the ALS user step for one shopper against fixed item factors.

    ``YᵀY + λI`` is computed once here (float64, in chunks so a large catalogue needs no
    float64 copy); each request then costs one ``f x f`` rank-k update and one solve.
    """

    def __init__(
        self,
        item_factors: F32,
        regularization: float,
        alpha: float,
        *,
        base_strength: float = DEFAULT_BASE_STRENGTH,
    ) -> None:
        if item_factors.ndim != 2:
            raise ValueError(f"item_factors must be 2-d, got shape {item_factors.shape}")
        if regularization < 0 or alpha <= 0 or base_strength < 0:
            raise ValueError("need regularization >= 0, alpha > 0, base_strength >= 0")
        self.item_factors = item_factors
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.base_strength = float(base_strength)
        n, f = item_factors.shape
        gram = np.zeros((f, f), dtype=np.float64)
        for start in range(0, n, _CHUNK):
            chunk = item_factors[start : start + _CHUNK].astype(np.float64)
            gram += chunk.T @ chunk
        gram[np.diag_indices(f)] += self.regularization
        self._a0: F64 = gram

    @property
    def factors(self) -> int:
        return int(self._a0.shape[0])

    def solve(self, items: npt.ArrayLike, weights: npt.ArrayLike) -> F32:
        """The implicit-ALS user vector for these interactions (item ids, event weights)."""
        return self._solve(*self._clean(items, weights))

    def _solve(self, ids: I64, w: F64) -> F32:
        if ids.size == 0:
            return np.zeros(self.factors, dtype=np.float32)
        c = self.alpha * w
        y = self.item_factors[ids].astype(np.float64)
        a = self._a0 + (y.T * (np.abs(c) - 1.0)) @ y
        b = y.T @ np.where(c > 0, c, 0.0)
        return np.linalg.solve(a, b).astype(np.float32)

    def user_vector(
        self, interactions: Iterable[tuple[int, float]], *, base: F32 | None = None
    ) -> F32:
        """Fold in ``(item_id, weight)`` pairs; blend with a known user's stored vector ``base``.

        See the module docstring for the blend.  Without interactions the result is ``base``
        (or zeros for an unknown shopper: the caller falls back to popularity).
        """
        pairs = list(interactions)
        ids = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        w = np.fromiter((p[1] for p in pairs), dtype=np.float64, count=len(pairs))
        return self.blend(ids, w, base=base)

    def blend(self, items: npt.ArrayLike, weights: npt.ArrayLike, *, base: F32 | None) -> F32:
        """``user_vector`` taking arrays: item ids and weights, same length."""
        ids, w = self._clean(items, weights)
        if base is not None and base.shape != (self.factors,):
            raise ValueError(f"base vector has shape {base.shape}, expected ({self.factors},)")
        if ids.size == 0:
            if base is None:
                return np.zeros(self.factors, dtype=np.float32)
            return np.asarray(base, dtype=np.float32)
        recent = self._solve(ids, w)
        if base is None:
            return recent
        share = ids.size / (ids.size + self.base_strength)
        mixed = share * recent + (1.0 - share) * base.astype(np.float32)
        return mixed.astype(np.float32)

    def _clean(self, items: npt.ArrayLike, weights: npt.ArrayLike) -> tuple[I64, F64]:
        ids = np.asarray(items, dtype=np.int64).reshape(-1)
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if ids.shape != w.shape:
            raise ValidationError(f"{ids.size} item ids but {w.size} weights", field="interactions")
        if ids.size == 0:
            return ids, w
        n = self.item_factors.shape[0]
        if ids.min() < 0 or ids.max() >= n:
            raise ValidationError(
                f"item ids must be in [0, {n}); got {sorted(set(ids[(ids < 0) | (ids >= n)]))}",
                field="interactions",
            )
        if not np.isfinite(w).all():
            raise ValidationError("interaction weights must be finite", field="interactions")
        keep = w != 0
        ids, w = ids[keep], w[keep]
        if ids.size > 1 and np.unique(ids).size != ids.size:
            uniq, inverse = np.unique(ids, return_inverse=True)
            ids = uniq.astype(np.int64)
            w = np.bincount(inverse, weights=w, minlength=ids.size).astype(np.float64)
            keep = w != 0  # a like and an equal dislike cancel out
            ids, w = ids[keep], w[keep]
        return ids, w
