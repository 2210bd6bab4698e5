"""`python -m pipeline.report STORE --html FILE`: the page as a person sees it (the demo catalogue's
report opened in headless Chromium: no console errors, every figure rendered, a screenshot kept as
build/test-artefacts/demo-report.png), bounded on a large store, and safe with hostile file names."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from musicnn_beam.reports import figures
from musicnn_beam.pipeline import report
from musicnn_beam.reports.page import render
from musicnn_beam.reports.view import Shown
from tests import synthetic_store

ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = ROOT / "build" / "test-artefacts"
CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make chromium`)
HOSTILE = "/music/<script>alert(1)</script>.mp3"
HOSTILE_MESSAGE = '<img src=x onerror="alert(2)"> & more'


def figure_counts(page: str) -> tuple[int, int]:
    """(figures the page holds, the count its <body> expects)."""
    expected = int(re.search(r'<body data-figures-expected="(\d+)"', page).group(1))
    return page.count("data-figure="), expected


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> synthetic_store.Synthetic:
    return synthetic_store.write(tmp_path_factory.mktemp("hostile") / "store", n_tracks=40, n_errors=3,
                                 extra_uris=(HOSTILE,), with_patches=(HOSTILE,), error_message=HOSTILE_MESSAGE)


@pytest.mark.unit
def test_hostile_names_are_text(hostile):
    page = render(hostile.output, tracks=[HOSTILE])
    assert "<script>alert(1)" not in page and "onerror=" not in page.replace('onerror=&quot;', "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.mp3" in page  # shown, as text: the taggram's title, the map
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt; &amp; more" in page  # the error's message
    assert page.count("<script>") == 1  # the page's own check, nothing else
    found, expected = figure_counts(page)
    assert found == expected == 4  # growth, tags, the one taggram, the map


@pytest.mark.unit
def test_page_is_bounded_on_a_large_store(tmp_path):
    """50,000 tracks and 2,000 errors: the page stays far under 10 MB (every list and figure is capped)."""
    tracks = [f"/music/large/pick{i:02d}.mp3" for i in range(20)]  # more than a page shows
    big = synthetic_store.write(tmp_path / "store", n_tracks=50_000, n_runs=30, n_errors=2000, n_removed=100,
                                n_retagged=500, extra_uris=tuple(tracks), with_patches=tuple(tracks[:2]))
    path = tmp_path / "report.html"
    assert report.main([big.output, "--html", str(path), *[a for t in tracks for a in ("--track", t)]]) == 0
    page = path.read_text()
    size = len(page.encode())
    print(f"\n50,000-track store: page {size / 1024:.0f} KB")
    assert size < 10 * 2**20
    found, expected = figure_counts(page)
    assert found == expected == 3 + 2  # growth, tags, map, and the two of the 12 shown tracks with patches
    assert page.count("<circle") <= 2000 + 20  # the map's sample and its legend
    assert "12 of the tracks asked for (at most 12)" in page and page.count('<table class="similar">') == 12
    assert "50,000 tracks" not in page and "of 49,900 tracks" in page  # a sample; the removed are not tracked


@pytest.mark.unit
def test_cli_arguments(hostile, tmp_path, capsys):
    path = tmp_path / "r.html"
    assert report.main([hostile.output, "--html", str(path), "--model", "msd-musicnn"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {path} (")
    assert report.main([hostile.output, "--model", "msd-musicnn"]) == 0  # the text report, of that model
    assert capsys.readouterr().out.startswith("under /music/\n\nmodel msd-musicnn: 40 tracked, 3 errors")
    for argv, message in ([[hostile.output, "--track", HOSTILE], "--track needs --html"],
                          [[hostile.output, "--html", str(path), "--model", "nope"], "no model 'nope'"],
                          [[str(tmp_path / "missing"), "--html", str(path)], "cannot read"],
                          [[hostile.output, "--nope"], "unrecognized arguments"]):
        assert report.main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and message in err and err.startswith("musicnn-beam report: error: ")


# --- the demo catalogue in a browser -----------------------------------------------------------------

def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs Debian's package")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:  # a fresh profile, left nowhere
        return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                               f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def console_lines(stderr: str) -> list[str]:
    """What the page logged (console.log/warn/error, uncaught exceptions, refused loads): Chromium
    writes each as a line with CONSOLE in it when started with --enable-logging=stderr."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line]


@pytest.mark.e2e
def test_chromium_would_catch_a_console_error(tmp_path):
    """The check below sees what it must: a page that logs an error, or loads from the network."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src '
                   '\'none\'; script-src \'unsafe-inline\'"></head><body><script>console.error("broken figure");'
                   '</script><img src="https://cdn.example/x.png"></body></html>')
    done = chromium("--enable-logging=stderr", "--v=0", "--dump-dom", bad.as_uri())
    lines = console_lines(done.stderr)
    assert any("broken figure" in line for line in lines), done.stderr
    assert any("cdn.example" in line for line in lines), done.stderr  # the page's policy refused it


@pytest.mark.e2e
def test_demo_report_in_a_browser(converted_models, tmp_path):
    catalogue, output = tmp_path / "demo-catalogue", tmp_path / "demo-output"
    run([sys.executable, "-m", "demo", "--out", str(catalogue)])
    run([sys.executable, "-m", "pipeline", "--input", str(catalogue), "--output", str(output)], timeout=600)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page = ARTEFACTS / "demo-report.html"
    done = run([sys.executable, "-m", "pipeline.report", str(output), "--html", str(page)])
    assert done.stdout.startswith(f"wrote {page} (")
    html = page.read_text()
    found, expected = figure_counts(html)
    assert expected == found >= 2 + 4 + 1  # growth, tags, 4 sampled taggrams, the map
    assert "cosine similarity" in html and "Corrupt" in html  # neighbours shown; the demo's broken file

    dom = chromium("--enable-logging=stderr", "--v=0", "--window-size=1400,900", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    assert console_lines(dom.stderr) == []
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    rendered = re.search(r'data-figures-rendered="(\d+)"', body)
    assert rendered and int(rendered.group(1)) == expected, body
    assert 'data-figure-broken=""' not in dom.stdout  # the attribute the check sets on a figure that failed

    # The whole page in one screenshot: as tall as the page said it is.
    height = min(int(re.search(r'data-page-height="(\d+)"', body).group(1)), 20000)
    screenshot = ARTEFACTS / "demo-report.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(f"--screenshot={screenshot}", f"--window-size=1400,{height}", "--hide-scrollbars", page.as_uri())
    assert screenshot.is_file(), shot.stderr
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert non_blank(screenshot), "the screenshot is one colour"


def non_blank(png: Path) -> bool:
    """More than one colour in the image (Pillow comes with matplotlib)."""
    from PIL import Image
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    return colours is None or len(colours) > 1


def run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ}, cwd=str(ROOT))
    assert done.returncode == 0, f"{argv[2:]} exited {done.returncode}: {done.stderr[-2000:]}"
    return done



@pytest.mark.unit
def test_figures_are_bounded_for_a_model_with_many_tags():
    """A custom model with 500 classes: the tag chart and a taggram show at most MAX_TAGS rows."""
    names = [f"tag{i}" for i in range(500)]
    rng = np.random.default_rng(0)
    tags = figures.tag_figure(names, rng.integers(0, 9, 500), np.sort(rng.random((500, 5)), axis=1))
    assert len(tags.axes[0].get_yticklabels()) == figures.MAX_TAGS
    taggram = rng.random((500, 7)).astype(np.float32)
    taggram[123] += 5  # the strongest tag is kept
    fig = figures.taggram_figure(Shown("x.mp3", 21.0, [], np.arange(7) * 3.0, taggram), names)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == figures.MAX_TAGS and "tag123" in labels
    assert len(figures.png_data_uri(fig)) < 1_000_000
