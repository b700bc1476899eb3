"""Request-time fold-in equals implicit's ``recalculate_user`` (the ALS user step)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from engine.errors import ValidationError
from engine.recommend.foldin import FoldIn

pytestmark = pytest.mark.unit

EVENT_WEIGHTS = (1.0, 3.0, 5.0)  # view, add_to_cart, purchase


def clustered_interactions(
    n_users: int, n_items: int, *, clusters: int = 6, seed: int = 0
) -> sp.csr_matrix:
    """Users who mostly interact within one or two item clusters; values are event weights."""
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(clusters, size=n_items)
    members = [np.flatnonzero(item_cluster == c) for c in range(clusters)]
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for u in range(n_users):
        liked = rng.choice(clusters, size=rng.integers(1, 3), replace=False)
        for _ in range(int(rng.integers(3, 25))):
            pool = members[int(rng.choice(liked))] if rng.random() < 0.85 else np.arange(n_items)
            rows.append(u)
            cols.append(int(rng.choice(pool)))
            vals.append(float(rng.choice(EVENT_WEIGHTS, p=[0.7, 0.2, 0.1])))
    return sp.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=(n_users, n_items))


def fit(matrix: sp.csr_matrix, *, alpha: float, use_cg: bool = True) -> AlternatingLeastSquares:
    model = AlternatingLeastSquares(
        factors=16,
        regularization=0.05,
        alpha=alpha,
        iterations=15,
        use_cg=use_cg,
        num_threads=1,  # no OpenMP pool in the test process
        random_state=7,
    )
    model.fit(matrix, show_progress=False)
    return model


@pytest.fixture(scope="module", autouse=True)
def _one_blas_thread() -> Iterator[None]:
    with threadpool_limits(1, "blas"):
        yield


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    return clustered_interactions(400, 240)


@pytest.fixture(scope="module", params=[2.0, 1.0], ids=["alpha2", "alpha1"])
def trained(
    request: pytest.FixtureRequest, matrix: sp.csr_matrix
) -> tuple[AlternatingLeastSquares, FoldIn]:
    model = fit(matrix, alpha=request.param)
    return model, FoldIn(model.item_factors, model.regularization, model.alpha)


def test_equals_implicit_recalculate_user(
    trained: tuple[AlternatingLeastSquares, FoldIn], matrix: sp.csr_matrix
) -> None:
    model, foldin = trained
    for u in range(0, 400, 37):
        row = matrix[u]
        expected = model.recalculate_user(u, row)
        got = foldin.solve(row.indices, row.data)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))


def test_scores_equal_recommend_with_recalculate_user(
    trained: tuple[AlternatingLeastSquares, FoldIn], matrix: sp.csr_matrix
) -> None:
    model, foldin = trained
    for u in (3, 150, 299):
        row = matrix[u]
        ids, scores = model.recommend(
            u, row, N=10, recalculate_user=True, filter_already_liked_items=False
        )
        x = foldin.user_vector(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        ours = model.item_factors @ x
        np.testing.assert_allclose(ours[ids], scores, atol=1e-4)
        top = np.argsort(-ours)[:10]
        assert set(top.tolist()) == set(ids.tolist())


def test_full_history_gives_the_trained_user_vector(matrix: sp.csr_matrix) -> None:
    """Training's last user step used the previous item factors, so only approximately."""
    for use_cg in (False, True):
        model = fit(matrix, alpha=2.0, use_cg=use_cg)
        foldin = FoldIn(model.item_factors, model.regularization, model.alpha)
        for u in range(0, 400, 41):
            row = matrix[u]
            x = foldin.solve(row.indices, row.data)
            trained = model.user_factors[u]
            cosine = x @ trained / (np.linalg.norm(x) * np.linalg.norm(trained))
            assert cosine > 0.995
            assert abs(np.linalg.norm(x) / np.linalg.norm(trained) - 1) < 0.05


def test_duplicates_add_up_like_a_csr_matrix(
    trained: tuple[AlternatingLeastSquares, FoldIn],
) -> None:
    model, foldin = trained
    ids, weights = [5, 9, 5, 40, 9, 5], [1.0, 3.0, 1.0, 5.0, 1.0, 3.0]
    row = sp.csr_matrix(
        (np.array(weights, dtype=np.float32), ([0] * 6, ids)),
        shape=(1, model.item_factors.shape[0]),
    )
    expected = model.recalculate_user(0, row)
    np.testing.assert_allclose(foldin.solve(ids, weights), expected, atol=1e-4)


def test_negative_weight_is_a_dislike_as_in_implicit(
    trained: tuple[AlternatingLeastSquares, FoldIn],
) -> None:
    model, foldin = trained
    ids, weights = [2, 17, 30], [3.0, -5.0, 1.0]
    row = sp.csr_matrix(
        (np.array(weights, dtype=np.float32), ([0] * 3, ids)),
        shape=(1, model.item_factors.shape[0]),
    )
    np.testing.assert_allclose(
        foldin.solve(ids, weights), model.recalculate_user(0, row), atol=1e-4
    )


def test_no_interactions(trained: tuple[AlternatingLeastSquares, FoldIn]) -> None:
    model, foldin = trained
    empty = sp.csr_matrix((1, model.item_factors.shape[0]), dtype=np.float32)
    assert not model.recalculate_user(0, empty).any()  # implicit: zeros
    assert not foldin.user_vector([]).any()
    base = model.user_factors[4]
    np.testing.assert_array_equal(foldin.user_vector([], base=base), base)
    np.testing.assert_array_equal(foldin.user_vector([(3, 0.0)], base=base), base)  # 0 = nothing


def test_blend_with_the_stored_vector(trained: tuple[AlternatingLeastSquares, FoldIn]) -> None:
    model, foldin = trained
    base = model.user_factors[11]
    pairs = [(1, 1.0), (2, 3.0), (3, 1.0), (4, 5.0), (5, 1.0)]  # 5 recent items, strength 5
    recent = foldin.user_vector(pairs)
    blended = foldin.user_vector(pairs, base=base)
    np.testing.assert_allclose(blended, 0.5 * recent + 0.5 * base, rtol=1e-6, atol=1e-7)
    many = [(i, 1.0) for i in range(45)]  # 45 items: 90 % recent
    np.testing.assert_allclose(
        foldin.user_vector(many, base=base),
        0.9 * foldin.user_vector(many) + 0.1 * base,
        rtol=1e-5,
        atol=1e-6,
    )


def test_bad_input(trained: tuple[AlternatingLeastSquares, FoldIn]) -> None:
    model, foldin = trained
    n = model.item_factors.shape[0]
    with pytest.raises(ValidationError, match="item ids must be in"):
        foldin.solve([1, n], [1.0, 1.0])
    with pytest.raises(ValidationError, match="item ids must be in"):
        foldin.solve([-1], [1.0])
    with pytest.raises(ValidationError, match="2 item ids but 1 weights"):
        foldin.solve([1, 2], [1.0])
    with pytest.raises(ValidationError, match="finite"):
        foldin.solve([1], [float("nan")])
    with pytest.raises(ValueError, match="base vector"):
        foldin.user_vector([(1, 1.0)], base=np.zeros(3, dtype=np.float32))
