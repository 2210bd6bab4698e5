"""Similar tracks: the numerics (reports/similarity.py) against a brute-force numpy ranking, the search
(reports/similar.py) over synthetic stores, and `python -m pipeline.similar` on a store a real run
wrote (integration)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pytest

from musicnn_beam.reports.similarity import TopK, best, cosine, normalise
from musicnn_beam.store.errors import StoreUnreadable


def brute_force(query: np.ndarray, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine in float64 and a stable argsort: the ranking best(cosine(...)) must give."""
    q = query.astype(np.float64)
    e = embeddings.astype(np.float64)
    norms = np.linalg.norm(e, axis=1) * np.linalg.norm(q)
    similarity = np.divide(e @ q, norms, out=np.zeros(len(e)), where=norms > 0)
    order = np.argsort(-similarity, kind="stable")[:k]
    return order, similarity[order]


def catalogue_of(seed: int, n: int, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Random embeddings with the awkward cases: zero rows, exact duplicates (ties), the query itself."""
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((n, d)).astype(np.float32)
    query = rng.standard_normal(d).astype(np.float32)
    if n >= 10:
        embeddings[3] = 0.0
        embeddings[7] = 0.0
        embeddings[5] = embeddings[8] = embeddings[9]  # a three-way tie
        embeddings[4] = 2.5 * query  # the query's own direction: similarity 1
    return query, embeddings


@pytest.mark.unit
def test_normalise_gives_unit_rows_and_keeps_zero_rows_zero():
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]], np.float32)
    np.testing.assert_allclose(normalise(rows), [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(normalise(np.array([0.0, 2.0])), [0.0, 1.0])
    assert normalise(rows).dtype == np.float32


@pytest.mark.unit
def test_cosine_is_in_range_and_zero_for_zero_vectors():
    query, embeddings = catalogue_of(1, 50)
    similarity = cosine(query, embeddings)
    assert similarity.shape == (50,) and similarity.dtype == np.float32
    assert np.all((similarity >= -1) & (similarity <= 1))
    assert similarity[3] == similarity[7] == 0.0
    assert similarity[4] == pytest.approx(1.0, abs=1e-6)
    assert np.all(cosine(np.zeros(16, np.float32), embeddings) == 0.0)


@pytest.mark.unit
def test_cosine_of_several_queries_is_a_column_each():
    query, embeddings = catalogue_of(2, 40)
    queries = np.stack([query, -query, np.zeros_like(query), embeddings[4]])
    similarity = cosine(queries, embeddings)
    assert similarity.shape == (40, 4)
    for j, q in enumerate(queries):
        np.testing.assert_allclose(similarity[:, j], cosine(q, embeddings), atol=1e-6)


@pytest.mark.unit
@pytest.mark.parametrize("seed, n, k", [(0, 1000, 10), (1, 50, 5), (2, 12, 1), (3, 20, 20), (4, 7, 30), (5, 0, 3),
                                        (6, 300, 299)])
def test_best_cosine_ranks_as_a_stable_sort_of_it(seed, n, k):
    query, embeddings = catalogue_of(seed, n)
    indices = best(cosine(query, embeddings), k)
    similarities = cosine(query, embeddings)[indices]
    expected, expected_similarities = brute_force(query, embeddings, k)
    assert len(indices) == min(k, n) and indices.dtype == np.int64
    np.testing.assert_allclose(similarities, expected_similarities, atol=1e-6)
    # Where float32 and float64 agree on the order (no two within rounding), the indices are the same.
    if n and np.all(np.diff(np.sort(cosine(query, embeddings))) != 0):
        np.testing.assert_array_equal(indices, expected)


@pytest.mark.unit
def test_ties_are_ranked_by_row_order_and_k_past_n_gives_every_row():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5], np.float32)
    np.testing.assert_array_equal(best(scores, 3), [1, 3, 0])
    np.testing.assert_array_equal(best(scores, 4), [1, 3, 0, 2])
    np.testing.assert_array_equal(best(scores, 10), [1, 3, 0, 2, 5, 4])
    assert len(best(scores, 0)) == 0 and len(best(np.zeros(0, np.float32), 5)) == 0
    np.testing.assert_array_equal(best(np.zeros(6, np.float32), 2), [0, 1])  # all tied: the first rows


@pytest.mark.unit
@pytest.mark.parametrize("chunk", [1, 3, 64, 999, 5000])
def test_chunked_top_k_equals_the_whole(chunk):
    query, embeddings = catalogue_of(7, 1000)
    embeddings[500:520] = embeddings[3]  # ties across chunk boundaries
    embeddings[600] = embeddings[4]  # a tie for first place, in a later chunk
    k = 25
    whole = best(cosine(query, embeddings), k)
    merged = TopK(k)
    for first in range(0, len(embeddings), chunk):
        scores = cosine(query, embeddings[first:first + chunk])
        merged.add(scores, np.arange(first, first + len(scores)))
    np.testing.assert_array_equal(merged.indices, whole)
    np.testing.assert_allclose(merged.scores, cosine(query, embeddings)[whole], atol=1e-6)  # BLAS rounds by shape


@pytest.mark.unit
def test_top_k_over_chunks_takes_the_ids_it_is_given():
    """Rows of other models or statuses are left out of a chunk: ids name the rows that are offered."""
    merged = TopK(3)
    merged.add(np.array([0.2, 0.9, 0.5], np.float32), np.array([1, 4, 9]))
    merged.add(np.array([0.9, 0.1], np.float32), np.array([(1 << 32) + 2, (1 << 32) + 7]))  # the next file
    np.testing.assert_array_equal(merged.indices, [4, (1 << 32) + 2, 9])
    np.testing.assert_allclose(merged.scores, [0.9, 0.9, 0.5])


@pytest.mark.unit
def test_nearest_scans_the_store_in_chunks_and_ranks_as_numpy(tmp_path, monkeypatch):
    """A `current` of 6 files, one of 5,000 synthetic rows (200 values) and five that mix in rows of
    another model (256 values), errors and removed files, searched in chunks of 700 rows: each
    query's neighbours are numpy's cosine ranking over this model's tracked rows, itself left out;
    nearest_many answers several queries in one scan as nearest does each."""
    from musicnn_beam.reports import similar
    from musicnn_beam.store.read import current_files, current_version, read_table
    from musicnn_beam.store.schema import CURRENT_SCHEMA
    from tests.synthetic_store import MODEL, commit, run_row, uri_of, write

    output = tmp_path / "store"
    write(output, n_tracks=5000)
    rng = np.random.default_rng(3)
    base = {"track_id": None, "version": "v", "fingerprint": "f", "settings": "s", "run_id": "R", "top_tags": ["x"],
            "activations": None, "duration_s": 1.0, "error": None, "message": None}
    mixed = [{**base, "uri": f"/mixed/{i}.mp3", "model": "mtt-vgg", "status": "tracked",
              "embedding": rng.standard_normal(256).tolist()} if i % 3 == 0 else
             {**base, "uri": f"/mixed/{i}.mp3", "model": MODEL, "status": "tracked",
              "embedding": rng.standard_normal(200).tolist()} if i % 3 == 1 else
             {**base, "uri": f"/mixed/{i}.mp3", "model": MODEL, "status": ["error", "removed"][i % 2], "embedding": None}
             for i in range(1500)]
    for seq, first in enumerate(range(0, len(mixed), 300), 3):  # a commit each, a file each
        commit(str(output), run_row(f"R{seq}", seq),
               {"current": pa.Table.from_pylist(mixed[first:first + 300], schema=CURRENT_SCHEMA)})
    assert len(current_files(str(output), current_version(str(output)))) == 6
    monkeypatch.setattr(similar, "CHUNK_ROWS", 700)
    rows = [r for r in read_table(str(output), "current").to_pylist()
            if r["model"] == MODEL and r["status"] == "tracked"]
    embeddings = np.array([r["embedding"] for r in rows], np.float32)
    uris = [r["uri"] for r in rows]
    asked = [uri_of(7), uri_of(2500), "/mixed/4.mp3"]
    queries = similar.embeddings_of(str(output), MODEL, asked + ["/not/there.mp3"])
    assert sorted(queries) == sorted(asked)
    many = similar.nearest_many(str(output), MODEL, np.stack([queries[u] for u in asked]), k=10, exclude=asked)
    for uri, found in zip(asked, many):
        expected, similarities = brute_force(queries[uri], embeddings, 11)
        expected = [(uris[i], s) for i, s in zip(expected, similarities) if uris[i] != uri][:10]
        assert [n.uri for n in found] == [u for u, _ in expected]
        np.testing.assert_allclose([n.similarity for n in found], [s for _, s in expected], atol=1e-5)
        alone = similar.nearest(str(output), MODEL, similar.embedding_of(str(output), MODEL, uri), 10, uri)
        assert [(n.uri, n.top_tags) for n in alone] == [(n.uri, n.top_tags) for n in found]
        np.testing.assert_allclose([n.similarity for n in alone], [n.similarity for n in found], atol=1e-6)
        assert all(n.track_id is None and n.top_tags for n in found)
    vgg = similar.nearest(str(output), "mtt-vgg", np.ones(256, np.float32), k=1000)
    assert sorted(n.uri for n in vgg) == sorted(f"/mixed/{i}.mp3" for i in range(0, 1500, 3))
    first = similar.nearest_many(str(output), MODEL, queries[asked[0]], k=3)[0][0]  # not left out: itself first
    assert first.uri == asked[0] and first.similarity == pytest.approx(1.0)
    with pytest.raises(similar.SimilarError, match="is not a tracked track of model msd-musicnn"):
        similar.embedding_of(str(output), MODEL, "/not/there.mp3")
    with pytest.raises(similar.SimilarError, match="embeddings have 200 values, the query 3"):
        similar.nearest(str(output), MODEL, np.ones(3, np.float32))
    with pytest.raises(StoreUnreadable, match="cannot read .*current"):
        similar.nearest(str(tmp_path / "nothing"), MODEL, queries[asked[0]])


@pytest.mark.unit
def test_a_store_upgraded_to_embeddings_in_current_is_searched_whole(tmp_path):
    """A store written before `current` had `embedding`, one of whose files holds only error rows: the
    upgrade rewrites the other (it fills its embeddings), this one keeps no such column, and the
    search reads it as nulls."""
    from deltalake import DeltaTable, write_deltalake

    from musicnn_beam.reports import similar
    from musicnn_beam.store.location import join
    from musicnn_beam.store.open import open_store
    from musicnn_beam.store.schema import CURRENT_SCHEMA, TABLES, TRACKS_SCHEMA

    output = str(tmp_path / "store")
    old = pa.schema([f for f in CURRENT_SCHEMA if f.name != "embedding"])
    base = {"model": "m", "track_id": None, "version": "v", "fingerprint": "f", "settings": "s", "run_id": "R1",
            "top_tags": ["rock"], "activations": [0.5], "duration_s": 3.0, "error": None, "message": None}
    for name, schema in TABLES.items():
        DeltaTable.create(join(output, name), old if name == "current" else schema)
    tracked = [{**base, "uri": f"/{i}.mp3", "status": "tracked"} for i in range(3)]
    write_deltalake(join(output, "current"), pa.Table.from_pylist(tracked, schema=old), mode="append")
    errors = [{**base, "uri": "/x.mp3", "status": "error", "error": "NotAudio", "message": "no"}]
    write_deltalake(join(output, "current"), pa.Table.from_pylist(errors, schema=old), mode="append")
    tracks = [{"uri": f"/{i}.mp3", "track_id": None, "n_patches": 1, "padded": False, "duration_s": 3.0,
               "sample_rate": 16000, "channels": 1, "activations": [0.5], "embedding": [1.0, float(i)],
               "top_tags": ["rock"], "model": "m", "version": "v", "run_id": "R1"} for i in range(3)]
    write_deltalake(join(output, "tracks"), pa.Table.from_pylist(tracks, schema=TRACKS_SCHEMA), mode="append")
    with pytest.raises(similar.SimilarError, match="has no embedding column .* run the pipeline on the store once"):
        similar.embedding_of(output, "m", "/0.mp3")

    open_store(output)
    found = similar.nearest(output, "m", similar.embedding_of(output, "m", "/0.mp3"), k=5, exclude="/0.mp3")
    assert [n.uri for n in found] == ["/1.mp3", "/2.mp3"]
    np.testing.assert_allclose([n.similarity for n in found], [1 / np.sqrt(2), 1 / np.sqrt(5)], rtol=1e-6)


# --- the CLI on a store a real run wrote ----------------------------------------------------------

def similar(command, *args: str) -> subprocess.CompletedProcess:
    """`python -m pipeline.similar ARGS`, its main() in this process (conftest.py's command)."""
    from musicnn_beam.pipeline.similar import main

    return command(main, *args)


def printed_rows(result: subprocess.CompletedProcess) -> list[tuple[int, float, str]]:
    """The table's rows: (rank, similarity, uri)."""
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["rank", "similarity", "uri", "top", "tags"], result.stdout
    return [(int(l.split()[0]), float(l.split()[1]), l.split()[2]) for l in lines[2:]]


@pytest.mark.integration
def test_similar_tracks_of_a_stored_track_and_of_a_new_file(converted_models, tmp_path, cli, command):
    from musicnn_beam.reports.similar import embedding_of, nearest
    from tests.test_catalogue_store import catalogue, run_line
    from musicnn_beam.store.read import read_table

    music, output = catalogue(tmp_path / "music"), tmp_path / "store"
    run_line(cli("--input", str(music), "--output", str(output)))
    current = read_table(str(output), "current").to_pylist()
    tracked = {r["uri"]: r for r in current if r["status"] == "tracked"}
    assert len(tracked) == 4 and all(r["embedding"] is None for r in current if r["status"] != "tracked")
    tracks = {r["uri"]: np.asarray(r["embedding"]) for r in read_table(str(output), "tracks").to_pylist()}
    assert all(np.array_equal(np.asarray(r["embedding"], np.float32), tracks[u].astype(np.float32))
               for u, r in tracked.items())  # current holds the tracks row's embedding

    query_uri = str(music / "a.mp3")
    query = tracks[query_uri]
    expected = sorted(((float(query @ e / np.linalg.norm(query) / np.linalg.norm(e)), u)
                       for u, e in tracks.items() if u != query_uri), reverse=True)
    result = similar(command, str(output), query_uri, "--k", "10")
    print(result.stdout)
    assert result.stdout.splitlines()[0] == f"nearest of {query_uri}, model msd-musicnn:"
    rows = printed_rows(result)
    assert [u for _, _, u in rows] == [u for _, u in expected]  # itself left out; the 3 others, best first
    assert [r for r, _, _ in rows] == [1, 2, 3]
    assert all(-1 <= s <= 1 for _, s, _ in rows) and [s for _, s, _ in rows] == sorted((s for _, s, _ in rows), reverse=True)
    for (_, printed, _), (similarity, _) in zip(rows, expected):
        assert printed == pytest.approx(similarity, abs=5e-4)
    found = nearest(str(output), "msd-musicnn", embedding_of(str(output), "msd-musicnn", query_uri), k=2,
                    exclude=query_uri)
    assert [(n.uri, n.top_tags) for n in found] == [(u, tracked[u]["top_tags"]) for _, u in expected[:2]]
    np.testing.assert_allclose([n.similarity for n in found], [s for s, _ in expected[:2]], atol=1e-5)

    # A file that is not in the store is tagged here, with the pipeline's numbers: a copy of a stored
    # track finds that track, at similarity 1.
    copy = tmp_path / "elsewhere" / "copy.mp3"
    copy.parent.mkdir()
    shutil.copy(music / "a.mp3", copy)
    result = similar(command, str(output), str(copy), "--k", "2")
    print(result.stdout, result.stderr[-2000:])
    assert result.stdout.splitlines()[0] == f"nearest of {copy} (tagged now, not in the store), model msd-musicnn:"
    (rank, top, uri), _ = printed_rows(result)
    assert (rank, uri) == (1, query_uri) and top == pytest.approx(1.0, abs=1e-3)

    # Bad input: one line, status 2.
    for args, message in (((str(tmp_path / "nothing"), query_uri), "cannot read"),
                          ((str(output), str(tmp_path / "missing.mp3")), "is not a tracked track of model msd-musicnn"),
                          ((str(output), str(music / "x.mp3")), "cannot be tagged: NotAudio"),
                          ((str(output), query_uri, "--k", "0"), "argument --k: '0' must be at least 1")):
        result = similar(command, *args)
        assert result.returncode == 2 and result.stdout == "", result
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("musicnn-beam similar: error: ") and message in line, line


@pytest.mark.integration
def test_a_store_in_a_bucket_is_searched_as_a_local_one(tmp_path, command):
    """`current` on S3 (moto's server): nearest through deltalake's storage, the CLI included, gives
    what the same rows give on local disk."""
    from musicnn_beam.reports import similar
    from musicnn_beam.pipeline.similar import main
    from tests.servers import s3_store
    from tests.synthetic_store import MODEL, uri_of, write

    with s3_store() as bucket:
        outputs = [str(tmp_path / "local"), bucket.url("similar/store")]
        for output in outputs:
            write(output, n_tracks=3000)  # the same rows in each
        local, remote = (similar.nearest(o, MODEL, similar.embedding_of(o, MODEL, uri_of(5)), k=5, exclude=uri_of(5))
                         for o in outputs)
        assert local == remote and len(remote) == 5
        result = command(main, outputs[1], uri_of(5), "--k", "5")  # `python -m pipeline.similar`
        assert printed_rows(result) == [(i, round(n.similarity, 3), n.uri) for i, n in enumerate(remote, 1)]
