"""Where a store's tables are: their URIs, delta-rs's storage options for them, and the fsspec
filesystem that lists and removes their files (local disk, s3://, gs://)."""
from __future__ import annotations

import os
from typing import Optional

from fsspec.core import url_to_fs


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def storage_options(uri: str) -> Optional[dict]:
    """delta-rs's options for a URI: it reads credentials from the environment as fsspec does; an
    http:// S3 endpoint (a local S3 server) must be allowed by name."""
    if uri.startswith(("s3://", "s3a://")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options = {"AWS_REGION": os.environ.get("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))}
        if endpoint:
            options.update(AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true" if endpoint.startswith("http://") else "false")
        return options
    return None


def delta_table(uri: str, version: Optional[int] = None):
    """The Delta table at uri (at `version`; None: its latest), raising what delta-rs raises: for
    writing. What reads a table for its rows opens it with store.read.open_table."""
    from deltalake import DeltaTable
    return DeltaTable(uri, version=version, storage_options=storage_options(uri))


def filesystem(output: str):
    """OUTPUT's fsspec filesystem, as it is now (no cached listing), and OUTPUT's path on it."""
    fs, root = url_to_fs(output, skip_instance_cache=True)
    fs.invalidate_cache()
    return fs, root.rstrip("/")
