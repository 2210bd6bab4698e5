"""The HTML report's numbers (reports/view.py): its SQL over a synthetic store against numpy over the
same rows, and the numerics."""
from __future__ import annotations

import numpy as np
import pytest

from tests import synthetic_store
from musicnn_beam.reports import view
from musicnn_beam.transforms.tags import top_tags

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> synthetic_store.Synthetic:
    root = tmp_path_factory.mktemp("view") / "store"
    return synthetic_store.write(root, n_tracks=300, n_runs=4, n_errors=12, n_removed=5, n_retagged=7,
                                 extra_uris=("/music/it's here.mp3",), with_patches=("/music/it's here.mp3",))


@pytest.fixture(scope="module")
def store(small) -> view.StoreView:
    return view.StoreView(small.output)


def test_glance_and_model(store, small):
    assert view.model_counts(store) == {"msd-musicnn": len(small.tracked)}
    assert view.choose_model({"a": 3, "b": 9, "c": 9}, None) == "b"
    with pytest.raises(view.ViewError, match="no model 'x'"):
        view.choose_model({"a": 3}, "x")
    at = view.glance(store, "msd-musicnn")
    assert at["tracked"] == len(small.tracked) and at["removed"] == len(small.removed) and at["runs"] == 4
    assert at["errors"] == {kind: len(uris) for kind, uris in small.errors.items()}
    assert at["audio_h"] == pytest.approx(small.durations.sum() / 3600)


def test_tag_distribution_equals_numpy(store, small):
    names = view.classes(store, "msd-musicnn")
    counts, spread = view.tag_distribution(store, "msd-musicnn", names)
    top3 = np.argsort(-small.activations, axis=1, kind="stable")[:, :3]
    assert counts.tolist() == np.bincount(top3.ravel(), minlength=len(names)).tolist()
    # t-digest estimates: the median within a few percent of the activations' range.
    median = np.median(small.activations, axis=0)
    assert np.abs(spread[:, 2] - median).max() < 0.02
    assert (spread[:, 0] <= spread[:, 2]).all() and (spread[:, 2] <= spread[:, 4]).all()


def test_growth_ends_on_the_current_view(store, small):
    g = view.growth(store, "msd-musicnn")
    assert g.run_ids == small.run_ids and g.seq.tolist() == [1, 2, 3, 4]
    assert g.tracks[-1] == len(small.tracked)
    assert g.audio_h[-1] == pytest.approx(small.durations.sum() / 3600)
    assert (np.diff(g.tracks[:-1]) > 0).all()  # each run added a quarter of the catalogue
    assert sum(int(c.sum()) for c in g.errors.values()) == 12


def test_errors_and_samples(store, small):
    groups = view.error_groups(store, "msd-musicnn")
    assert {g.kind: g.count for g in groups} == {k: len(v) for k, v in small.errors.items()}
    for group in groups:
        assert [u for u, _ in group.examples] == sorted(small.errors[group.kind])[:view.ERROR_EXAMPLES]
    uris, tags, embeddings = view.map_sample(store, "msd-musicnn", limit=50)
    assert len(uris) == 50 and embeddings.shape == (50, 200) and set(uris) <= set(small.tracked)
    assert view.map_sample(store, "msd-musicnn", limit=50)[0] == uris  # the same sample every time
    assert view.sample_uris(store, "msd-musicnn", 3) == uris[:3]


def test_a_quote_in_a_uri_is_a_quote(store, small):
    names = view.classes(store, "msd-musicnn")
    shown, missing = view.shown_tracks(store, "msd-musicnn", ["/music/it's here.mp3", "/music/nope' OR '1'='1"], names)
    assert missing == ["/music/nope' OR '1'='1"]
    (track,) = shown
    assert track.taggram.shape == (len(names), len(track.starts)) and len(track.starts) > 1
    assert np.allclose(np.diff(track.starts), synthetic_store.PATCH_S)
    assert track.top[0][0] == names[int(np.argmax(small.activations[-1]))]


def test_pca_2d():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (200, 10)) * np.array([10, 5, 1, 1, 1, 1, 1, 1, 1, 1]) + 7
    xy = view.pca_2d(x)
    assert xy.shape == (200, 2) and xy.dtype == np.float32
    assert np.allclose(xy.mean(axis=0), 0, atol=1e-4)
    assert xy[:, 0].std() > xy[:, 1].std() > 3  # the widest axis first
    assert np.allclose(view.pca_2d(x[::-1])[::-1], xy, atol=1e-3)  # signs fixed: the same map whatever the order
    assert view.pca_2d(x[:1]).tolist() == [[0.0, 0.0]] and view.pca_2d(np.zeros((0, 5))).shape == (0, 2)


def test_taggram_cumulative_top_tags():
    starts, matrix = view.taggram(np.array([3.0, 0.0]), np.array([[0.1, 0.2], [0.3, 0.4]], np.float32))
    assert starts.tolist() == [0.0, 3.0] and np.allclose(matrix, [[0.3, 0.1], [0.4, 0.2]])
    files, audio = view.cumulative(3, [(1, 2, 20.0), (3, 1, 5.0)], [(2, 1, 10.0)])
    assert files.tolist() == [2, 1, 2] and audio.tolist() == [20.0, 10.0, 15.0]
    assert top_tags(np.array([0.1, 0.9, 0.5], np.float32), ["a", "b", "c"], 2) == [("b", pytest.approx(0.9)),
                                                                                        ("c", pytest.approx(0.5))]
    assert view.literal("it's") == "'it''s'"
