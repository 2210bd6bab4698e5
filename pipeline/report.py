"""Print a store's current view: per model, every file's latest result (top tags, error or removed),
and the last run; or write it as an HTML page (reports/page.py).

    python -m pipeline.report OUTPUT      (a local folder or a URI: s3://..., gs://...)
    python -m pipeline.report OUTPUT --html FILE [--track URI ...] [--model NAME]
"""
from __future__ import annotations

import sys

from musicnn_beam.pipeline.args import ArgumentParser, UsageError
from musicnn_beam.pipeline.console import exit_after_output
from musicnn_beam.reports.text import ReportError, format_report
from musicnn_beam.store.errors import StoreUnreadable

PROG = "musicnn-beam report"


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m pipeline.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("output", metavar="STORE", help="the store: a local folder or a URI (s3://..., gs://...)")
    parser.add_argument("--html", metavar="FILE", help="write the report as one self-contained HTML page to FILE "
                                                       "(local) instead of printing it")
    parser.add_argument("--track", metavar="URI", action="append", default=[],
                        help="with --html: a track to show with its taggram and similar tracks, as the store "
                             "writes its URI (repeatable; default: a sample)")
    parser.add_argument("--model", metavar="NAME", help="that model's results only (default: every model; "
                                                        "with --html, the one with the most tracks)")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        if args.track and not args.html:
            raise ReportError("--track needs --html (the text report lists every track)")
        if args.html:
            from musicnn_beam.transforms.sources import normalise_uri
            return _write_html(args.output, args.html, args.model, [normalise_uri(u) for u in args.track])
        report = format_report(args.output, model=args.model)
    except (UsageError, ReportError, StoreUnreadable) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


def _write_html(output: str, path: str, model: str | None, tracks: list[str]) -> int:
    from musicnn_beam.reports.page import render
    from musicnn_beam.reports.view import ViewError

    try:
        page = render(output, model=model, tracks=tracks)
    except ViewError as exc:
        raise ReportError(str(exc)) from exc
    data = page.encode("utf-8")
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    print(f"wrote {path} ({len(data) / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    exit_after_output(main())
