"""The nearest tracks of one track, or of an audio file that is not in the store (tagged here first):
cosine similarity of the tracks' embeddings (mean over patches), from the store's `current` table.

    python -m pipeline.similar STORE URI [--k 10] [--model NAME]     (pipeline/similar.py)

`current` is scanned a file and a chunk of rows at a time, reading only status, model and embedding
(decoding the embeddings is most of the time), and only the k best rows are kept between chunks
(reports.similarity.TopK); their URIs and tags are read at the end, for them alone. Memory is
one chunk however large the catalogue: 1,000,000 tracks in 2.4 s and 1.2 GB (BENCHMARKS.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from musicnn_beam.reports.similarity import TopK, cosine
from musicnn_beam.store.location import join
from musicnn_beam.store.read import open_table
from musicnn_beam.store.schema import parse_settings

# Rows per chunk: 65,536 embeddings of 200 float32 are 52 MB, and large chunks keep the work per
# row in Arrow and numpy (one matrix product a chunk), not in Python.
CHUNK_ROWS = 65_536


class SimilarError(Exception):
    """Bad input (a URI that is neither a tracked track nor a readable audio file, a store without
    embeddings, embeddings of another length): reported in one line, exit status 2."""


@dataclass(frozen=True)
class Neighbour:
    uri: str
    track_id: Optional[str]
    similarity: float  # cosine of the two embeddings, in [-1, 1]
    top_tags: list[str]  # the neighbour's top tags, highest first


def _current(output: str) -> ds.Dataset:
    """`current` as a pyarrow dataset, one fragment per Parquet file, in the store's column types.
    Raises StoreUnreadable, SimilarError (no embedding column)."""
    uri = join(output, "current")
    table = open_table(output, "current")
    # On local disk, Arrow's own filesystem: deltalake's default reads through Python, which cost a
    # third more time on 1,000,000 embeddings.
    local = None if "://" in uri else pafs.SubTreeFileSystem(os.path.abspath(uri), pafs.LocalFileSystem())
    dataset = table.to_pyarrow_dataset(filesystem=local)
    if "embedding" not in dataset.schema.names:
        raise SimilarError(f"{uri} has no embedding column (written before it had one): run the pipeline "
                           f"on the store once, which adds it")
    return dataset


def _text(column: str) -> ds.Expression:
    # delta-rs writes strings as string_view, which a comparison with a string does not take.
    return ds.field(column).cast(pa.string())


def _is(column: str, value: str) -> ds.Expression:
    return _text(column) == value


def _chunks(dataset: ds.Dataset, where: ds.Expression, columns: list[str]) -> Iterator[pa.RecordBatch]:
    yield from dataset.scanner(columns=columns, filter=where, batch_size=CHUNK_ROWS).to_batches()


def _fragment_chunks(dataset: ds.Dataset, fragment: ds.Fragment, columns: list[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """A file's rows CHUNK_ROWS at a time, every row (no filter: a row's place in its file is what
    names it), with the first row's place. The dataset's schema: a column the file lacks reads as nulls."""
    first = 0
    for batch in fragment.to_batches(schema=dataset.schema, columns=columns, batch_size=CHUNK_ROWS):
        yield first, batch
        first += len(batch)


def _equal(column: pa.Array, value: str) -> np.ndarray:
    return pc.equal(column.cast(pa.string()), value).to_numpy(zero_copy_only=False)


def _embeddings(batch: pa.RecordBatch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of a batch's chosen rows (bool (n,)), those with an embedding -> (their positions (m,), their
    embeddings (m, d) float32). When every row is chosen (a file of one model's tracks), the
    embeddings are a view of the Arrow buffer; otherwise the chosen rows are copied out."""
    column = batch.column("embedding")
    rows = rows & column.is_valid().to_numpy(zero_copy_only=False)
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False)  # offsets index the unsliced values
    lengths = np.diff(offsets)[rows]
    positions = np.flatnonzero(rows)
    d = int(lengths[0]) if len(lengths) else 0
    if np.any(lengths != d):
        raise SimilarError(f"embeddings of different lengths ({lengths.min()} to {lengths.max()}) in one model's rows")
    if len(positions) == len(batch):
        return positions, values[offsets[0]:offsets[-1]].reshape(len(batch), d)
    return positions, values[offsets[:-1][positions][:, None] + np.arange(d)]


def _rows(dataset: ds.Dataset, fragment: ds.Fragment, rows: list[int], columns: list[str]) -> list[dict]:
    """Chosen rows of one file (places in it, ascending) -> their columns, as dicts."""
    scanner = fragment.scanner(schema=dataset.schema, columns=columns, batch_size=CHUNK_ROWS)
    return scanner.take(pa.array(rows, pa.int64())).to_pylist()


# A row's id: its file's number in the table's list of files, then its place in the file.
_FILE_BITS = 32


def nearest_many(output: str, model: str, queries: np.ndarray, k: int = 10,
                 exclude: Sequence[Optional[str]] = ()) -> list[list[Neighbour]]:
    """For each query (q, d), the k tracked tracks of `model` in the store whose embeddings are most
    similar (cosine), most similar first (ties: in the table's order), in one scan of `current`.
    exclude[j]: a URI left out of query j's neighbours (its own track), or None. Raises SimilarError
    (not a store, embeddings of another length than the queries').

    The scan reads status, model and embedding a file and a chunk at a time; the neighbours' URIs and
    tags are read at the end, for them alone."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    exclude = list(exclude) or [None] * len(queries)
    # One more than k where a URI is left out: it can be at most one of them (a URI has one row per model).
    bests = [TopK(k + (uri is not None)) for uri in exclude]
    dataset = _current(output)
    fragments = list(dataset.get_fragments())
    for number, fragment in enumerate(fragments):
        for first, batch in _fragment_chunks(dataset, fragment, ["status", "model", "embedding"]):
            chosen = _equal(batch.column("status"), "tracked") & _equal(batch.column("model"), model)
            positions, embeddings = _embeddings(batch, chosen)
            if not len(positions):
                continue
            if embeddings.shape[1] != queries.shape[1]:
                raise SimilarError(f"model {model}'s embeddings have {embeddings.shape[1]} values, "
                                   f"the query {queries.shape[1]}")
            similarity = cosine(queries, embeddings)  # (m, q)
            ids = (number << _FILE_BITS) + first + positions
            for j, best in enumerate(bests):
                best.add(similarity[:, j], ids)
    found: dict[int, dict] = {}
    wanted = sorted({int(i) for best in bests for i in best.indices})
    for number in sorted({i >> _FILE_BITS for i in wanted}):
        places = [i & ((1 << _FILE_BITS) - 1) for i in wanted if i >> _FILE_BITS == number]
        rows = _rows(dataset, fragments[number], places, ["uri", "track_id", "top_tags"])
        found.update({(number << _FILE_BITS) + place: row for place, row in zip(places, rows)})
    return [[Neighbour(uri=found[i]["uri"], track_id=found[i]["track_id"], similarity=float(score),
                       top_tags=list(found[i]["top_tags"] or []))
             for i, score in zip(best.indices.tolist(), best.scores) if found[i]["uri"] != uri][:k]
            for best, uri in zip(bests, exclude)]


def nearest(output: str, model: str, query: np.ndarray, k: int = 10, exclude: Optional[str] = None) -> list[Neighbour]:
    """The k tracked tracks of `model` in the store whose embeddings are most similar (cosine) to
    query (d,), most similar first; `exclude`: a URI left out (the query's own track). Several
    queries: nearest_many, one scan for all."""
    return nearest_many(output, model, np.asarray(query, dtype=np.float32)[None], k, [exclude])[0]


def _tracked_rows(output: str, uris: Sequence[str], model: Optional[str]) -> Iterator[dict]:
    """The tracked rows of `uris` ({"uri", "model", "embedding"}), of one model or all. Their
    places are found from the small columns; the embeddings are read for those rows' files alone."""
    dataset = _current(output)
    wanted = pa.array(list(uris), pa.string())
    for fragment in dataset.get_fragments():
        places = []
        for first, batch in _fragment_chunks(dataset, fragment, ["uri", "model", "status"]):
            chosen = _equal(batch.column("status"), "tracked") & pc.is_in(
                batch.column("uri").cast(pa.string()), value_set=wanted).to_numpy(zero_copy_only=False)
            if model is not None:
                chosen &= _equal(batch.column("model"), model)
            places += (first + np.flatnonzero(chosen)).tolist()
        if places:
            yield from (r for r in _rows(dataset, fragment, places, ["uri", "model", "embedding"]) if r["embedding"])


def embeddings_of(output: str, model: str, uris: Sequence[str]) -> dict[str, np.ndarray]:
    """The embeddings (d,) float32 of those of `uris` (as the store writes them,
    transforms.sources.normalise_uri) that are tracked tracks of `model` in the store."""
    return {r["uri"]: np.asarray(r["embedding"], np.float32) for r in _tracked_rows(output, uris, model)}


def embedding_of(output: str, model: str, uri: str) -> np.ndarray:
    """The embedding (d,) float32 of a tracked track of `model` (uri as the store writes it).
    Raises SimilarError when the store holds no such track."""
    found = embeddings_of(output, model, [uri])
    if uri not in found:
        raise SimilarError(f"{uri} is not a tracked track of model {model} in {output}")
    return found[uri]


def tracked_embeddings(output: str, uri: str) -> dict[str, np.ndarray]:
    """Every model's embedding (d,) of the tracked track `uri` in the store: {model: embedding}, {}
    when it holds none (for a query whose model is not named)."""
    return {r["model"]: np.asarray(r["embedding"], np.float32) for r in _tracked_rows(output, [uri], None)}


def settings_of(output: str, model: str) -> dict[str, str]:
    """The settings of the store's tracks of `model` ({"patch_hop": "187", "precision": "float32"}),
    those of its first tracked row; {} when it has none."""
    for batch in _chunks(_current(output), _is("status", "tracked") & _is("model", model), ["settings"]):
        if len(batch):
            return parse_settings(batch.column("settings")[0].as_py())
    return {}


def format_neighbours(neighbours: list[Neighbour], top: int = 3) -> str:
    """The table the CLI prints: rank, similarity (3 decimals), uri, top tags."""
    width = max([len(n.uri) for n in neighbours] + [3])
    lines = [f"{'rank':>4}  {'similarity':>10}  {'uri':<{width}}  top tags"]
    lines += [f"{rank:>4}  {n.similarity:>10.3f}  {n.uri:<{width}}  {', '.join(n.top_tags[:top])}"
              for rank, n in enumerate(neighbours, 1)]
    return "\n".join(lines)
