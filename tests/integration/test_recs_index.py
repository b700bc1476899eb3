"""The FAISS item index (flat and IVF) against brute force, and loading a model directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from engine.recommend import artifact
from engine.recommend.artifact import RecModel, RecModelError
from engine.recommend.index import ItemIndex, exact_top_k, recall_at_k, single_thread

pytestmark = pytest.mark.integration

EVENT_WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}


# --- a synthetic model artifact, independent of training/ ---------------------------------------


def synthetic_interactions(
    n_users: int, n_items: int, *, clusters: int = 12, seed: int = 0
) -> sp.csr_matrix:
    """Users shopping mostly in one or two item clusters, with power-law item popularity."""
    rng = np.random.default_rng(seed)
    item_cluster = rng.integers(clusters, size=n_items)
    appeal = rng.pareto(1.2, size=n_items) + 1.0
    members = [np.flatnonzero(item_cluster == c) for c in range(clusters)]
    probs = [appeal[m] / appeal[m].sum() for m in members]
    rows, cols, vals = [], [], []
    weights = np.array(list(EVENT_WEIGHTS.values()))
    for u in range(n_users):
        liked = rng.choice(clusters, size=rng.integers(1, 3), replace=False)
        n = int(rng.integers(5, 40))
        picks = rng.choice(liked, size=n)
        for c in picks:
            rows.append(u)
            cols.append(int(rng.choice(members[c], p=probs[c])))
            vals.append(float(rng.choice(weights, p=[0.7, 0.2, 0.1])))
    return sp.csr_matrix((np.array(vals, dtype=np.float32), (rows, cols)), shape=(n_users, n_items))


def write_artifact(
    directory: Path, *, n_users: int = 1500, n_items: int = 3000, factors: int = 24, seed: int = 0
) -> Path:
    """Train a tiny implicit ALS and write it in the model-directory format."""
    matrix = synthetic_interactions(n_users, n_items, seed=seed)
    model = AlternatingLeastSquares(
        factors=factors,
        regularization=0.05,
        alpha=2.0,
        iterations=8,
        num_threads=1,
        random_state=seed,
    )
    model.fit(matrix, show_progress=False)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "version": f"test-{seed}",
        "kind": "als",
        "factors": factors,
        "regularization": 0.05,
        "alpha": 2.0,
        "weighting": "none",
        "iterations": 8,
        "event_weights": EVENT_WEIGHTS,
        "metrics": {},
    }
    (directory / "model.json").write_text(json.dumps(meta))
    (directory / "items.json").write_text(json.dumps([f"SKU-{i:05d}" for i in range(n_items)]))
    (directory / "users.json").write_text(json.dumps([f"c{u}" for u in range(n_users)]))
    np.save(directory / "item_factors.npy", model.item_factors.astype(np.float32))
    np.save(directory / "user_factors.npy", model.user_factors.astype(np.float32))
    binary = (matrix > 0).astype(np.float32)
    co = (binary.T @ binary).tolil()
    co.setdiag(0)
    co = co.tocsr()
    ids = np.full((n_items, 20), -1, dtype=np.int64)
    scores = np.zeros((n_items, 20), dtype=np.float32)
    for i in range(n_items):
        row = co[i]
        top = np.argsort(-row.data, kind="stable")[:20]
        ids[i, : top.size] = row.indices[top]
        scores[i, : top.size] = row.data[top]
    np.savez(directory / "bought_together.npz", ids=ids, scores=scores)
    np.save(directory / "popularity.npy", np.asarray(binary.sum(axis=0)).ravel().astype(np.float32))
    return directory


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One OpenMP thread (as in a replica): no thread pool left behind to break a later fork."""
    before = faiss.omp_get_max_threads()
    single_thread()
    with threadpool_limits(1, "blas"):
        yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_artifact(tmp_path_factory.mktemp("recs") / "model")


@pytest.fixture(scope="module")
def factors(model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return np.load(model_dir / "item_factors.npy"), np.load(model_dir / "user_factors.npy")


@pytest.fixture(scope="module", params=["flat", "ivf"])
def index(request: pytest.FixtureRequest, factors: tuple[np.ndarray, np.ndarray]) -> ItemIndex:
    items, users = factors
    return ItemIndex.build(items, kind=request.param, queries=users[::2])


def queries(users: np.ndarray) -> np.ndarray:
    """Held-out user vectors (odd rows: the IVF was tuned on even ones)."""
    return users[1::2][:300]


def top_ids(index: ItemIndex, qs: np.ndarray, k: int = 10, **kw: Any) -> np.ndarray:
    out = np.full((len(qs), k), -1, dtype=np.int64)
    for row, q in enumerate(qs):
        ids, _ = index.search(q, k, **kw)
        out[row, : ids.size] = ids
    return out


# --- the index -----------------------------------------------------------------------------------


def test_top10_against_brute_force(
    index: ItemIndex, factors: tuple[np.ndarray, np.ndarray]
) -> None:
    items, users = factors
    qs = queries(users)
    recall = recall_at_k(top_ids(index, qs), exact_top_k(items, qs, 10))
    if index.kind == "flat":
        assert recall == 1.0
    else:
        assert index.nlist is not None and index.nprobe is not None
        assert index.nprobe < index.nlist
        assert recall >= 0.95


def test_scores_are_true_inner_products_best_first(
    index: ItemIndex, factors: tuple[np.ndarray, np.ndarray]
) -> None:
    items, users = factors
    for q in queries(users)[:50]:
        ids, scores = index.search(q, 10)
        assert ids.dtype == np.int64 and scores.dtype == np.float32
        assert ids.size == 10
        np.testing.assert_allclose(scores, items[ids] @ q, rtol=1e-5, atol=1e-6)
        assert np.all(np.diff(scores) <= 0)


def test_excluded_ids_are_never_returned(
    index: ItemIndex, factors: tuple[np.ndarray, np.ndarray]
) -> None:
    items, users = factors
    qs = queries(users)[:100]
    truth = exact_top_k(items, qs, 60)
    found = []
    for q, best in zip(qs, truth, strict=True):
        exclude = best[:50].copy()  # the 50 best: the answer must come from further down
        ids, _ = index.search(q, 10, exclude=exclude)
        assert ids.size == 10
        assert not np.isin(ids, exclude).any()
        found.append(ids)
        if index.kind == "flat":  # exact, up to float32 near-ties
            expected = np.sort(items[best[50:60]] @ q)[::-1]
            np.testing.assert_allclose(items[ids] @ q, expected, rtol=1e-5, atol=1e-5)
    assert recall_at_k(np.array(found), truth[:, 50:]) >= 0.9


@pytest.mark.parametrize("path", ["exact", "selector"])
def test_allow_list_restricts(
    index: ItemIndex, factors: tuple[np.ndarray, np.ndarray], path: str
) -> None:
    items, users = factors
    rng = np.random.default_rng(1)
    allow = rng.choice(items.shape[0], size=items.shape[0] // 3, replace=False).astype(np.int64)
    exclude = allow[:5]
    saved = index.exact_allow_max
    index.exact_allow_max = allow.size if path == "exact" else 0
    try:
        for q in queries(users)[:40]:
            ids, scores = index.search(q, 10, allow=allow, exclude=exclude)
            assert np.isin(ids, allow).all()
            assert not np.isin(ids, exclude).any()
            np.testing.assert_allclose(scores, items[ids] @ q, rtol=1e-5, atol=1e-6)
            if path == "exact" or index.kind == "flat":
                rest = np.setdiff1d(allow, exclude)
                expected = np.sort(items[rest] @ q)[::-1][:10]
                np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
        assert index.search(queries(users)[0], 10, allow=np.empty(0, dtype=np.int64))[0].size == 0
        few = allow[:5]  # IVF widens its probe until it has found them all
        assert set(index.search(queries(users)[0], 10, allow=few)[0].tolist()) == set(few.tolist())
    finally:
        index.exact_allow_max = saved


def test_similar_items(index: ItemIndex, factors: tuple[np.ndarray, np.ndarray]) -> None:
    items, _ = factors
    for item in (0, 7, 1234):
        ids, scores = index.similar(item, 10, exclude=np.array([5, 6], dtype=np.int64))
        assert item not in ids and 5 not in ids and 6 not in ids
        np.testing.assert_allclose(scores, items[ids] @ items[item], rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError):
        index.similar(items.shape[0], 10)


def test_k_larger_than_catalogue_and_bad_query(index: ItemIndex) -> None:
    small = ItemIndex.build(index.item_factors[:30].copy(), kind="flat")
    ids, _ = small.search(index.item_factors[0], 100, exclude=np.array([0], dtype=np.int64))
    assert sorted(ids.tolist()) == list(range(1, 30))
    assert index.search(index.item_factors[0], 0)[0].size == 0
    with pytest.raises(ValueError, match="factors"):
        index.search(np.zeros(3, dtype=np.float32), 10)


def test_save_load_round_trip(
    index: ItemIndex, factors: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    items, users = factors
    index.save(tmp_path / "index.faiss")
    again = ItemIndex.load(tmp_path / "index.faiss", items)
    assert (again.kind, again.nlist, again.nprobe) == (index.kind, index.nlist, index.nprobe)
    assert again.nprobe_by_depth == index.nprobe_by_depth and again.recall == index.recall
    for q in queries(users)[:20]:
        a, b = index.search(q, 10), again.search(q, 10)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="vectors of dimension"):
        ItemIndex.load(tmp_path / "index.faiss", items[:100])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss", "index.json"]


# --- the model directory --------------------------------------------------------------------------


def test_rec_model_builds_then_reuses_the_index(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "m"
    directory.mkdir()
    for f in model_dir.iterdir():
        (directory / f.name).write_bytes(f.read_bytes())
    model = RecModel.load(directory, index_kind="ivf")
    assert (directory / "index.faiss").exists()
    info = json.loads((directory / "index.json").read_text())
    assert info["kind"] == "ivf" and info["nprobe"] == model.index.nprobe
    assert info["recall"] >= 0.95
    stamp = (directory / "index.faiss").stat().st_mtime_ns

    def no_build(*args: Any, **kwargs: Any) -> ItemIndex:
        raise AssertionError("the saved index should have been reused")

    monkeypatch.setattr(ItemIndex, "build", no_build)
    again = RecModel.load(directory, index_kind="ivf")
    assert again.index.nprobe == model.index.nprobe
    assert (directory / "index.faiss").stat().st_mtime_ns == stamp
    monkeypatch.undo()

    # the accessors
    assert model.version == "test-0" and model.n_items == 3000
    assert model.item_id("SKU-00042") == 42 and model.item_id("nope") is None
    assert model.sku(42) == "SKU-00042"
    with pytest.raises(IndexError):
        model.sku(-1)
    assert model.event_weights == EVENT_WEIGHTS
    vector = model.user_vector("c3")
    assert vector is not None
    np.testing.assert_array_equal(vector, model.user_factors[3])
    assert model.user_vector("stranger") is None
    folded = model.foldin.user_vector([(1, 5.0), (2, 1.0)])
    ids, _ = model.index.search(folded, 10, exclude=np.array([1, 2], dtype=np.int64))
    assert ids.size == 10

    # new item factors under the same name: the digest no longer matches, so it is rebuilt
    items = np.load(directory / "item_factors.npy")
    np.save(directory / "item_factors.npy", (items * 1.5).astype(np.float32))
    RecModel.load(directory, index_kind="ivf")
    assert (directory / "index.faiss").stat().st_mtime_ns != stamp
    # an unreadable index file is rebuilt too
    (directory / "index.faiss").write_bytes(b"garbage")
    assert RecModel.load(directory).index.kind == "flat"  # 3000 items: auto is flat
    assert json.loads((directory / "index.json").read_text())["kind"] == "flat"


def broken_copy(model_dir: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "broken"
    directory.mkdir()
    for f in model_dir.iterdir():
        if not f.name.startswith("index"):
            (directory / f.name).write_bytes(f.read_bytes())
    return directory


@pytest.mark.parametrize(
    ("damage", "names"),
    [
        (lambda d: (d / "item_factors.npy").unlink(), ["item_factors.npy: missing"]),
        (
            lambda d: np.save(d / "item_factors.npy", np.load(d / "item_factors.npy").astype("f8")),
            ["item_factors.npy: must be float32"],
        ),
        (
            lambda d: np.save(d / "user_factors.npy", np.load(d / "user_factors.npy")[:, :5]),
            ["user_factors.npy: has 5 factors"],
        ),
        (lambda d: (d / "model.json").write_text("{"), ["model.json: not readable JSON"]),
        (
            lambda d: (d / "model.json").write_text(json.dumps({"version": "x", "kind": "bpr"})),
            ["model.json: kind must be 'als'"],
        ),
        (
            lambda d: np.savez(d / "bought_together.npz", ids=np.zeros((3000, 20), dtype="i8")),
            ["bought_together.npz: lacks scores"],
        ),
        (
            lambda d: (d / "items.json").write_text(json.dumps(["a", "b"])),
            ["item_factors.npy: has 3000 rows, items.json lists 2 items", "popularity.npy"],
        ),
        (
            lambda d: (
                (d / "popularity.npy").unlink(),
                (d / "users.json").write_text(json.dumps([1, 2])),
            ),
            ["popularity.npy: missing", "users.json: must be a JSON list of strings"],
        ),
    ],
    ids=[
        "missing",
        "dtype",
        "factors",
        "json",
        "kind",
        "npz",
        "row-count",
        "several",
    ],
)
def test_broken_artifact_names_the_file(
    model_dir: Path, tmp_path: Path, damage: Any, names: list[str]
) -> None:
    directory = broken_copy(model_dir, tmp_path)
    damage(directory)
    with pytest.raises(RecModelError) as info:
        RecModel.load(directory)
    assert info.value.code == "model_error"
    for name in names:
        assert name in info.value.message
    assert {p["file"] for p in info.value.items} >= {n.split(":")[0] for n in names}
    assert not (directory / artifact.INDEX).exists()  # nothing built for a broken model


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RecModelError, match="does not exist"):
        RecModel.load(tmp_path / "nowhere")
