"""A fault-injecting HTTP proxy for the tests' S3 server: each request is forwarded to the server,
or, at the proxy's fault rate, answered 503, cut off (a TCP reset, no answer) or held back before it
is forwarded. It listens on 127.0.0.1 only, answers only what the test sends it, and stops with the
test.

    with FaultyProxy(upstream_port, fault_every=10) as proxy:
        ... AWS_ENDPOINT_URL=proxy.endpoint ...

Faults are deterministic: every `fault_every`-th request gets the next of `faults` (all of FAULTS
unless told) in turn.

`fail_objects=True` fails every request for an object (GET and HEAD of a key) and passes listings:
a storage outage that begins after the inputs were listed.

`only_under="/bucket/store/"` applies faults to requests for keys under that prefix alone (a store's
writes and its commit), and forwards the rest untouched.
"""
from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
FAULTS = ("error", "reset", "stall")
STALL_S = 1.5
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b'<Message>Please reduce your request rate.</Message></Error>')


class FaultyProxy:
    def __init__(self, upstream_port: int, fault_every: int = 0, fail_objects: bool = False,
                 only_under: str | None = None, faults: tuple[str, ...] = FAULTS):
        self.upstream_port = upstream_port
        self.fault_every = fault_every
        self.faults = faults
        self.fail_objects = fail_objects
        self.only_under = only_under
        self.counts: Counter[str] = Counter()  # forward, error, reset, stall
        self._requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FaultyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def choose(self, method: str, path: str) -> str:
        """What to do with one request: "forward" or one of FAULTS."""
        with self._lock:
            if self.only_under is not None and not _key_under(path, self.only_under):
                self.counts["forward"] += 1
                return "forward"
            self._requests += 1
            if self.fail_objects:
                is_object = method in ("GET", "HEAD") and "?" not in path and path.strip("/").count("/") >= 1
                fault = "error" if is_object else "forward"
            elif self.fault_every and self._requests % self.fault_every == 0:
                fault = self.faults[(self._requests // self.fault_every) % len(self.faults)]
            else:
                fault = "forward"
            self.counts[fault] += 1
            return fault


def _key_under(path: str, prefix: str) -> bool:
    """Whether a request names a key under prefix: in the path, or in a listing's `prefix=` query."""
    from urllib.parse import parse_qs, unquote, urlsplit

    url = urlsplit(path)
    bucket = "/" + url.path.lstrip("/").split("/", 1)[0] + "/"
    listed = parse_qs(url.query).get("prefix", [""])[0]
    return unquote(url.path).startswith(prefix) or (bucket + listed).startswith(prefix) and bool(listed)


def _handler(proxy: FaultyProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: the test reports the counts
            pass

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            fault = proxy.choose(self.command, self.path)
            if fault == "reset":
                # SO_LINGER 0: close sends a TCP RST, as a dropped connection does
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if fault == "error":
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(SLOW_DOWN)
                return
            if fault == "stall":
                time.sleep(STALL_S)
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            finally:
                upstream.close()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and (key.lower() != "content-length" or self.command == "HEAD"):
                    self.send_header(key, value)  # a HEAD answer's length is the object's, not its (empty) body's
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any

    return Handler
