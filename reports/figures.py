"""The HTML report's figures: matplotlib charts as inline PNG data URIs, and the catalogue map as an
inline SVG (one <circle> per track, its <title> the hover text: no script, no library in the page).

Figures are matplotlib.figure.Figure objects drawn by the Agg canvas, never pyplot: no global state,
no display, the same pixels on every machine (fonts: the DejaVu that ships with matplotlib). Their
pixel sizes are fixed, so a figure weighs the same whatever the store's size.
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib.figure import Figure

from musicnn_beam.reports.view import Growth, Shown

DPI = 90
LEGEND_TAGS = 12  # map colours: the most common top tags; the rest are "other"
# tab20's strong half first: 12 colours told apart on a white page.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78"]
OTHER = "#c8c8c8"
TITLE_CHARS = 300  # hover text per point: a URI can be long, the page must stay bounded
MAX_TAGS = 60  # rows of the tag chart and of a taggram (the shipped models have 50; a custom one may have more)


def png_data_uri(fig: Figure) -> str:
    """A figure as a base64 PNG data URI (what an <img src> takes inline)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def growth_figure(g: Growth) -> Figure:
    """Tracked files, audio hours and each run's errors by kind, against the run number."""
    fig = Figure(figsize=(12, 3.2), layout="constrained")
    tracks, hours, errors = fig.subplots(1, 3)
    marker = "o" if len(g.seq) <= 50 else None
    tracks.plot(g.seq, g.tracks, marker=marker, color=PALETTE[0])
    tracks.set(title="tracked files", xlabel="run")
    hours.plot(g.seq, g.audio_h, marker=marker, color=PALETTE[1])
    hours.set(title="audio hours", xlabel="run")
    bottom = np.zeros(len(g.seq))
    for i, (kind, counts) in enumerate(sorted(g.errors.items())):
        errors.bar(g.seq, counts, bottom=bottom, label=kind, color=PALETTE[i % len(PALETTE)], width=0.8)
        bottom = bottom + counts
    errors.set(title="files failed, by run and kind", xlabel="run")
    if g.errors:
        errors.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside: never over a bar
    for ax in (tracks, hours, errors):
        ax.set_xlim(0.5, len(g.seq) + 0.5)
        if len(g.seq) <= 12:  # every run numbered (the locator alone labels one run 0.6 to 1.4)
            ax.set_xticks(g.seq)
        else:
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.yaxis.get_major_locator().set_params(integer=ax is not hours)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    return fig


def tag_figure(names: list[str], counts: np.ndarray, spread: np.ndarray) -> Figure:
    """Per tag, most carried first (the MAX_TAGS most): tracks with it among their top 3 (bars), and
    the spread of its mean activation over the tracks (box: 25-75th percentile, line: median,
    whiskers: 5-95th). counts (n_classes,), spread (n_classes, 5)."""
    order = np.lexsort((-np.nan_to_num(spread[:, 2]), -counts))[:MAX_TAGS]
    n = len(order)
    fig = Figure(figsize=(12, 1.2 + 0.19 * n), layout="constrained")
    bars, boxes = fig.subplots(1, 2, sharey=True)
    y = np.arange(n)
    bars.barh(y, counts[order], color=PALETTE[0])
    bars.set_yticks(y, [names[i] for i in order], fontsize=8)
    bars.set(title="tracks with the tag in their top 3", xlabel="tracks")
    bars.xaxis.get_major_locator().set_params(integer=True)
    stats = [{"whislo": s[0], "q1": s[1], "med": s[2], "q3": s[3], "whishi": s[4], "fliers": []}
             for s in np.nan_to_num(spread[order])]
    boxes.bxp(stats, positions=y, orientation="horizontal", widths=0.6, showfliers=False, patch_artist=True,
              manage_ticks=False,  # keep the bars' tag names on the shared axis
              boxprops={"facecolor": "#cfe2f3"}, medianprops={"color": PALETTE[3]})
    boxes.set(title="mean activation over the tracks (5th-95th percentile)", xlabel="activation")
    for ax in (bars, boxes):
        ax.grid(axis="x", alpha=0.3)
    bars.set_ylim(n - 0.5, -0.5)  # most carried on top; no margin rows (bxp widens the limits)
    return fig


def taggram_figure(shown: Shown, names: list[str]) -> Figure:
    """Tags x time as musicnn's notebook plots it: a row per tag (the model's order; at most
    MAX_TAGS, the track's strongest), a column per patch placed at its start in seconds, colour the
    activation (scaled to the track, as there)."""
    rows = np.arange(len(shown.taggram))
    if len(rows) > MAX_TAGS:  # the track's strongest tags, in the model's order
        rows = np.sort(np.argsort(-shown.taggram.mean(axis=1), kind="stable")[:MAX_TAGS])
    matrix, labels = shown.taggram[rows], [names[i] for i in rows]
    n_tags, n_patches = matrix.shape
    step = float(np.median(np.diff(shown.starts))) if n_patches > 1 else max(shown.duration_s, 1.0)
    left, right = float(shown.starts[0]) if n_patches else 0.0, (float(shown.starts[-1]) + step) if n_patches else step
    fig = Figure(figsize=(10, 1.0 + 0.11 * n_tags), layout="constrained")  # 0.11 in a row: room for 6.5 pt names
    ax = fig.subplots()
    # The default interpolation draws patches as blocks, and smooths only where a long track has more
    # patches than the figure has pixels.
    image = ax.imshow(matrix, aspect="auto", cmap="viridis", extent=(left, right, n_tags - 0.5, -0.5))
    ax.set_yticks(np.arange(n_tags), labels, fontsize=6.5)
    ax.set_xlabel("time (s): patch start")
    fig.colorbar(image, ax=ax, label="activation", pad=0.01, aspect=40)
    return fig


def map_colours(tags: list[str]) -> dict[str, str]:
    """Top tag -> colour: the LEGEND_TAGS most common tags (then by name) get their own; others none."""
    counts: dict[str, int] = {}
    for tag in tags:
        counts[tag] = counts.get(tag, 0) + 1
    common = sorted(counts, key=lambda t: (-counts[t], t))[:LEGEND_TAGS]
    return {tag: PALETTE[i] for i, tag in enumerate(common)}


def map_svg(xy: np.ndarray, labels: list[str], tags: list[str], width: int = 900, height: int = 600) -> str:
    """The catalogue map: xy (n, 2) (the embeddings' first two principal components), a circle per
    track coloured by its top tag, hover (the <title>) showing its label (the track) and tag; a
    legend beside."""
    colours = map_colours(tags)
    pad, legend_w = 28, 170  # room for the axis names
    plot_w = width - legend_w
    parts = [f'<svg class="map" data-figure="map" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="catalogue map">',
             f'<rect x="0" y="0" width="{plot_w}" height="{height}" fill="#fafafa" stroke="#ddd"/>']
    if len(xy):
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        px = pad + (xy[:, 0] - lo[0]) / span[0] * (plot_w - 2 * pad)
        py = height - pad - (xy[:, 1] - lo[1]) / span[1] * (height - 2 * pad)  # SVG's y grows downwards
        radius = 5 if len(xy) <= 500 else 3.5  # a few tracks are easier to hover, many easier to tell apart
        for x, y, label, tag in zip(px, py, labels, tags):
            label = label if len(label) <= TITLE_CHARS else label[:TITLE_CHARS] + "..."
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colours.get(tag, OTHER)}" '
                         f'fill-opacity="0.8">'
                         f'<title>{html.escape(label)} ({html.escape(tag or "")})</title></circle>')
    parts.append(f'<text x="{plot_w / 2}" y="{height - 5}" font-size="11" fill="#888" text-anchor="middle" '
                 f'font-family="sans-serif">first principal component</text>'
                 f'<text x="12" y="{height / 2}" font-size="11" fill="#888" text-anchor="middle" '
                 f'font-family="sans-serif" transform="rotate(-90 12 {height / 2})">second principal component</text>')
    legend = [*colours.items()] + ([("other", OTHER)] if any(t not in colours for t in tags) else [])
    for i, (tag, colour) in enumerate(legend):
        y = pad + 18 * i
        parts.append(f'<circle cx="{plot_w + 18}" cy="{y}" r="5" fill="{colour}"/>'
                     f'<text x="{plot_w + 30}" y="{y + 4}" font-size="12" font-family="sans-serif">'
                     f'{html.escape(tag)}</text>')
    parts.append("</svg>")
    return "".join(parts)
