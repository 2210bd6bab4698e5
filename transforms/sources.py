"""Inputs: files, folders (recursively, audio files only) and globs on any fsspec filesystem."""
from __future__ import annotations

import posixpath
from typing import Iterator

from fsspec.core import url_to_fs

from transforms.audio import AUDIO_EXTENSIONS

_GLOB_CHARS = set("*?[")


def _is_audio_name(path: str) -> bool:
    return posixpath.splitext(path)[1].lower() in AUDIO_EXTENSIONS


def expand_input(pattern: str) -> Iterator[str]:
    """A file, folder or glob -> the URIs it names, sorted.

    Files and globs are taken as given (a non-audio file named explicitly gets an error row); a
    folder is walked recursively and only files with an audio extension are taken.
    """
    fs, root = url_to_fs(pattern)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]

    def uri(path: str) -> str:
        return path if protocol in ("file", "local") else f"{protocol}://{path}"

    if any(c in pattern for c in _GLOB_CHARS):
        paths = [p for p, info in fs.glob(root, detail=True).items() if info["type"] == "file"]
    elif fs.isdir(root):
        paths = [p for p in fs.find(root) if _is_audio_name(p)]
    elif fs.exists(root):
        paths = [root]
    else:
        paths = []
    yield from (uri(p) for p in sorted(paths))
