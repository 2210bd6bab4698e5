"""The store as one self-contained HTML page (`python -m pipeline.report STORE --html FILE`): the
catalogue at a glance and its growth, the tag distribution, taggrams of chosen tracks with their
nearest neighbours, a map of the catalogue, and the errors.

Everything is inline (PNG data URIs, one SVG, a few lines of script and CSS), and the page's
Content-Security-Policy forbids anything else: it opens offline, from a mail or a bucket. Every
text from the store (URIs, tags, messages, model names) goes through html.escape: files are named
by users. Each figure is bounded in pixels and each list in rows (reports/view.py), so the page
stays under a few MB whatever the store's size.
"""
from __future__ import annotations

import html
from datetime import datetime, timezone
from typing import Iterable

import numpy as np

from musicnn_beam.reports import figures, view
from musicnn_beam.reports.similar import SimilarError, embeddings_of, nearest_many
from musicnn_beam.reports.text import common_prefix

NEIGHBOURS = 5
MESSAGE_CHARS = 300
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")

# On load, the page counts its figures that rendered (an <img> decoded with a width, a map with its
# points) into <body data-figures-rendered>, and its height into data-page-height: what a headless
# browser's dumped DOM shows a test (which then takes a screenshot of the whole page).
CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var rendered = 0;
  document.querySelectorAll("[data-figure]").forEach(function (figure) {
    var ok = figure.tagName.toLowerCase() === "img"
      ? figure.complete && figure.naturalWidth > 0
      : figure.querySelectorAll("circle > title").length > 0;
    if (ok) { rendered += 1; } else { figure.setAttribute("data-figure-broken", ""); }
  });
  document.body.setAttribute("data-figures-rendered", String(rendered));
  document.body.setAttribute("data-page-height", String(document.documentElement.scrollHeight));
});
"""

STYLE = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1240px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
h3 { font-size: 14px; margin-bottom: 4px; word-break: break-all; }
table { border-collapse: collapse; font-size: 13px; } td, th { padding: 3px 10px; text-align: left; }
th { background: #f0f0f0; } tr:nth-child(even) td { background: #fafafa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.uri { word-break: break-all; } .note { color: #666; font-size: 13px; }
img { max-width: 100%; } .track { display: flex; gap: 16px; align-items: flex-start; }
.track img { flex: 1 1 auto; min-width: 0; } .track table { flex: 0 0 auto; }
"""


def e(value) -> str:
    """Any value as HTML text."""
    return html.escape("" if value is None else str(value))


def render(output: str, model: str | None = None, tracks: Iterable[str] = (), generated: datetime | None = None) -> str:
    """The page for one model of the store at `output` (local or a bucket URI): `model`, or the one
    with the most tracks; `tracks`: the URIs to show taggrams and neighbours for (a sample when none).
    Raises view.ViewError, StoreUnreadable."""
    store = view.StoreView(output)
    counts = view.model_counts(store)
    model = view.choose_model(counts, model)
    names = view.classes(store, model)
    asked = list(tracks)
    shown, missing = view.shown_tracks(store, model, asked or view.sample_uris(store, model), names)
    uris, tops, embeddings = view.map_sample(store, model)
    groups = view.error_groups(store, model)
    prefix = common_prefix(uris + [t.uri for t in shown] + [u for g in groups for u, _ in g.examples])

    def short(uri: str) -> str:  # a URI under the common folder, without it (as the text report prints)
        return uri[len(prefix) + 1:] if prefix and uri.startswith(prefix + "/") else uri

    at = view.glance(store, model)
    generated = generated or datetime.now(timezone.utc)
    others = {m: n for m, n in counts.items() if m != model}
    head = (f"<h1>Catalogue report: {e(output)}</h1>"
            f'<p class="note">model <b>{e(model)}</b>, the store\'s current view on {generated:%Y-%m-%d %H:%M} UTC.'
            + (" Other models in this store (<code>--model NAME</code>): "
               + ", ".join(f"{e(m)} ({n:,} tracks)" for m, n in sorted(others.items())) + "." if others else "")
            + (f" Files are named under <code>{e(prefix)}/</code>." if prefix else "") + "</p>")
    sections = [
        _glance(at, view.growth(store, model)),
        _tags(names, *view.tag_distribution(store, model, names)),
        _tracks(output, model, names, shown, missing, bool(asked), short),
        _map(uris, tops, embeddings, at["tracked"], short),
        _errors(groups, short),
    ]
    body = "\n".join([head, *(html_text for html_text, _ in sections)])
    return _document(f"musicnn-beam report: {output}", body, sum(n for _, n in sections))


# Each section: (its HTML, how many figures it holds).

def _glance(at: dict, growth: view.Growth) -> tuple[str, int]:
    rows = [("tracked files", f"{at['tracked']:,}"), ("audio hours", f"{at['audio_h']:,.2f}"),
            ("runs", f"{at['runs']:,}"), ("files in error", f"{at['in_error']:,}"),
            *[(f"&nbsp;&nbsp;{e(kind)}", f"{n:,}") for kind, n in at["errors"].items()],
            ("removed (left the catalogue)", f"{at['removed']:,}")]
    return ('<h2 id="glance">The catalogue at a glance</h2><table>'
            + "".join(f'<tr><td>{k}</td><td class="num">{v}</td></tr>' for k, v in rows) + "</table>"
            + _img(figures.growth_figure(growth), "growth of the catalogue, run by run"), 1)


def _tags(names: list[str], counts, spread) -> tuple[str, int]:
    return ('<h2 id="tags">Tags</h2><p class="note">For each of the model\'s tags: how many tracks carry it among '
            'their top 3, and the spread of its mean activation over all tracks.</p>'
            + _img(figures.tag_figure(names, counts, spread), "tag distribution"), 1)


def _tracks(output: str, model: str, names: list[str], shown: list[view.Shown], missing: list[str], asked: bool,
            short) -> tuple[str, int]:
    parts, n_figures = ['<h2 id="tracks">Tracks: taggrams and similar tracks</h2>'], 0
    parts.append(f'<p class="note">{len(shown)} of the tracks asked for (at most {view.TAGGRAMS}).</p>' if asked else
                 f'<p class="note">A sample of {len(shown)} tracks (the same on every page); choose others with '
                 f'<code>--track URI</code>.</p>')
    if missing:
        parts.append('<p class="note">Not tracked files of this model: '
                     + ", ".join(f'<span class="uri">{e(u)}</span>' for u in missing) + "</p>")
    neighbours, unavailable = _neighbours(output, model, [t.uri for t in shown])
    for track in shown:
        parts.append(f'<h3>{e(short(track.uri))} <span class="note">({track.duration_s:.1f} s)</span></h3>'
                     f'<div class="track">')
        if track.taggram.shape[1]:
            parts.append(_img(figures.taggram_figure(track, names), f"taggram of {track.uri}"))
            n_figures += 1
        else:  # a store whose patches were deleted, or written by another tool
            parts.append('<p class="note">No patches in the store for this result: no taggram.</p>')
        parts.append('<table><tr><th>top tag</th><th class="num">activation</th></tr>'
                     + "".join(f'<tr><td>{e(t)}</td><td class="num">{s:.3f}</td></tr>' for t, s in track.top)
                     + "</table></div>")
        if track.uri not in neighbours:
            parts.append(f'<p class="note">No similar tracks: {e(unavailable or "the track has no embedding")}.</p>')
            continue
        parts.append('<table class="similar"><tr><th>similar track</th><th class="num">cosine similarity</th>'
                     '<th>top tags</th></tr>'
                     + "".join(f'<tr><td class="uri">{e(short(n.uri))}</td><td class="num">{n.similarity:.3f}</td>'
                               f'<td>{e(", ".join((n.top_tags or [])[:3]))}</td></tr>' for n in neighbours[track.uri])
                     + "</table>")
    return "".join(parts), n_figures


def _neighbours(output: str, model: str, uris: list[str]) -> tuple[dict[str, list], str]:
    """uri -> its NEIGHBOURS nearest tracks (reports/similar.py: two scans of `current` for all the
    uris), and why there are none when the store cannot say (its `current` has no embeddings yet)."""
    try:
        found = embeddings_of(output, model, uris)
        queries = [u for u in uris if u in found]
        if not queries:
            return {}, ""
        lists = nearest_many(output, model, np.stack([found[u] for u in queries]), k=NEIGHBOURS, exclude=queries)
    except SimilarError as exc:  # the rest of the page stands
        return {}, str(exc)
    return dict(zip(queries, lists)), ""


def _map(uris: list[str], tops: list[str], embeddings, tracked: int, short) -> tuple[str, int]:
    title = '<h2 id="map">Map of the catalogue</h2>'
    if not uris:
        return title + '<p class="note">No track embeddings in the store.</p>', 0
    sampled = f"a sample of {len(uris):,} of {tracked:,} tracks" if len(uris) < tracked else f"all {len(uris):,} tracks"
    return (title + f'<p class="note">The tracks\' mean embeddings on their first two principal components '
            f'({sampled}), coloured by top tag; hover over a point to see the track.</p>'
            + figures.map_svg(view.pca_2d(embeddings), [short(u) for u in uris], tops), 1)


def _errors(groups: list[view.ErrorGroup], short) -> tuple[str, int]:
    title = '<h2 id="errors">Errors</h2>'
    if not groups:
        return title + '<p class="note">No file of the current view is in error.</p>', 0
    return title + "".join(
        f"<h3>{e(g.kind)}: {g.count:,} file{'s' if g.count != 1 else ''}</h3><table><tr><th>file</th><th>message</th></tr>"
        + "".join(f'<tr><td class="uri">{e(short(uri))}</td><td>{e(_cut(message))}</td></tr>'
                  for uri, message in g.examples)
        + "</table>" for g in groups), 0


def _document(title: str, body: str, n_figures: int) -> str:
    """The HTML document around a body that holds n_figures elements marked data-figure."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title><style>{STYLE}</style><script>{CHECK_SCRIPT}</script></head>\n"
            f'<body data-figures-expected="{n_figures}" data-figures-rendered="0">\n{body}\n</body></html>\n')


def _img(fig, alt: str) -> str:
    return f'<img data-figure="img" src="{figures.png_data_uri(fig)}" alt="{e(alt)}">'


def _cut(text: str) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + "..."
