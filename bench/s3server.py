"""A moto S3 server in its own process that counts requests by S3 operation, for the bench.

Run as `python -m bench.s3server --port N`. Besides S3 it answers two paths of its own:
GET /__bench__/counts (JSON {operation: count}) and POST /__bench__/reset.
Counting at the server sees every request of every client, including the CLI's subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

CONTROL_PREFIX = "/__bench__/"
PROJECT = Path(__file__).resolve().parent.parent

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_BUCKET_GETS = {
    "versions": "ListObjectVersions",
    "versioning": "GetBucketVersioning",
    "location": "GetBucketLocation",
}


def operation_of(method: str, path: str, query: str, environ: dict[str, Any]) -> str:
    """The S3 operation a path-style request performs (the names botocore uses)."""
    bucket, _, key = path.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    if not bucket:
        return "ListBuckets" if method == "GET" else f"{method} /"
    if not key:
        if method == "GET":
            if "list-type" in params:
                return "ListObjectsV2"
            return next((op for name, op in _BUCKET_GETS.items() if name in params), "ListObjects")
        if method == "PUT":
            return "PutBucketVersioning" if "versioning" in params else "CreateBucket"
        if method == "POST" and "delete" in params:
            return "DeleteObjects"
        return {"HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(method, f"{method} bucket")
    if method == "PUT":
        return "CopyObject" if "HTTP_X_AMZ_COPY_SOURCE" in environ else "PutObject"
    return {
        "GET": "GetObject",
        "HEAD": "HeadObject",
        "DELETE": "DeleteObject",
    }.get(method, f"{method} object")


class CountingApp:
    """WSGI middleware: count each S3 request, serve the control paths, pass the rest to moto."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith(CONTROL_PREFIX):
            return self._control(path[len(CONTROL_PREFIX) :], method, start_response)
        operation = operation_of(method, path, environ.get("QUERY_STRING", ""), environ)
        with self.lock:
            self.counts[operation] += 1
        return self.app(environ, start_response)

    def _control(self, command: str, method: str, start_response: StartResponse) -> Iterable[bytes]:
        with self.lock:
            body = json.dumps(dict(self.counts), sort_keys=True).encode()
            if command == "reset" and method == "POST":
                self.counts.clear()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def wsgi_app() -> WsgiApp:
    """moto's S3 application alone, counted: what the server serves (granian's factory). Out of
    Flask's debug mode and without moto's CORS headers, unless PIPELINE_SYNC_BENCH_MOTO_AS_SHIPPED=1
    (see serve)."""
    from moto.moto_server import werkzeug_app

    as_shipped = os.environ.get(AS_SHIPPED_ENV) == "1"
    if not as_shipped:
        # What MOTO_DISABLE_GLOBAL_CORS sets, whenever moto read its settings.
        werkzeug_app.DISABLE_GLOBAL_CORS = True  # type: ignore[attr-defined]
    if os.environ.get(PLAIN_TIMESTAMPS_ENV) != "1":
        remember_timestamps()
    app = werkzeug_app.create_backend_app("s3")
    if not as_shipped:
        app.debug = False
    return CountingApp(app)


# Set to 1 to serve with moto's own timestamp conversion (for an A/B of remember_timestamps).
PLAIN_TIMESTAMPS_ENV = "PIPELINE_SYNC_BENCH_PLAIN_TIMESTAMPS"
# Set to 1 to serve moto's app as moto_server sets it up: in Flask's debug mode, with CORS
# headers on every response (for an A/B of serving it without them).
AS_SHIPPED_ENV = "PIPELINE_SYNC_BENCH_MOTO_AS_SHIPPED"
_TIMESTAMPS_KEPT = 1 << 16


def remember_timestamps(serializer: Any = None) -> bool:
    """Have moto's response serializer convert each (timestamp, format) once, and give back the
    same text for it afterwards. True when it does (now or already); False where moto has no
    TimestampSerializer._convert_timestamp_to_str to wrap (another moto: served as it is).

    A ListObjectsV2 page of 1,000 keys spends about 45% of the server's CPU there (py-spy of
    the granian worker): botocore's parse_to_aware_datetime and strftime for every key's
    LastModified, on every page of every listing, though a key's LastModified changes only when
    it is written. The conversion depends on its two arguments only (the value is taken to UTC,
    then formatted), so the text is the one moto would have made; an unhashable value is
    converted as before. Only the bench's server: it shares the client's two cores, and real S3
    spends none of them.
    """
    if serializer is None:
        from moto.core.serialize import TimestampSerializer as serializer
    convert = getattr(serializer, "_convert_timestamp_to_str", None)
    if not callable(convert):
        return False
    if getattr(convert, "remembers", False):
        return True
    kept: dict[tuple[Any, str], Any] = {}

    def remembered(self: Any, value: Any, timestamp_format: str) -> Any:
        try:
            key = (value, timestamp_format)
            found = kept.get(key)
        except TypeError:  # unhashable
            return convert(self, value, timestamp_format)
        if found is None:
            found = convert(self, value, timestamp_format)
            if len(kept) >= _TIMESTAMPS_KEPT:
                kept.clear()
            kept[key] = found
        return found

    remembered.remembers = True  # type: ignore[attr-defined]
    serializer._convert_timestamp_to_str = remembered
    return True


def serve(host: str, port: int) -> None:
    """moto's S3 application behind granian, kept alive between requests as S3 is.

    Five choices, each measured on this 2-core machine, where the server shares the cores with
    the client it is timing, so every millisecond it spends is one the client cannot:

    - moto's S3 app directly, without the dispatcher that `moto_server` puts in front. The
      dispatcher picks a service per request, and to do so lists moto's package directory (about
      90 `isdir` calls) under one lock shared by every request: 1.1 ms of the server's 2.8 ms of
      CPU per GetObject, all of it serialised. The bench speaks only S3.
    - A server that keeps connections alive, as S3 does. Werkzeug's dev server answers every
      request with `Connection: close`, so each GET of a cold plan opened a new TCP connection
      and the server a new thread: a first-ever plan at N = 10,000 took 39.9 s against it and
      28.9 s against uvicorn in one session, with the server's CPU 25.8 s against 16.3 s.
    - granian (HTTP in Rust) rather than uvicorn with a WSGI bridge (a2wsgi): 3,000 GETs cost
      the server 0.78 to 0.86 ms of CPU each against 2.0 to 2.2 ms behind uvicorn, in one
      session (/tmp scratch script, obstore client with 16 threads). One blocking thread: moto
      holds the GIL for all its work, and a second thread only measured slower (0.93 ms).
    - Each LastModified converted to text once (remember_timestamps): a listing's pages cost the
      server 40% less CPU (3 listings of 5,000 keys: 3.6 s against 5.8 and 6.6 s with moto's own
      conversion, alternated; /tmp scratch script, botocore client).
    - moto's app out of Flask's debug mode (moto_server turns it on: in it every request's form
      data is wrapped for a friendlier error) and without the CORS headers moto_server adds to
      every response for browsers: 3,000 GETs of a 2.6 KB object cost the server 0.74 to 1.03 ms
      of CPU each against 0.91 to 1.35 ms (8 alternated runs of each, 2026-12-02; /tmp scratch
      script, obstore client with 16 threads). The answers are otherwise moto's, byte for byte.

    granian runs the app in a worker process of its own: S3Server.cpu_seconds counts the tree.
    """
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels

    Granian(
        "bench.s3server:wsgi_app",
        factory=True,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=1,
        blocking_threads=1,
        http=HTTPModes.http1,
        websockets=False,
        log_level=LogLevels.warning,
        working_dir=PROJECT,
    ).serve()


def process_tree(pid: int) -> list[int]:
    """pid and every live descendant, from /proc/PID/task/TID/children."""
    found = [pid]
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for thread in threads:
        try:
            children = Path(f"/proc/{pid}/task/{thread}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(process_tree(int(child)))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class S3Server:
    """The counting server as a child process; use as a context manager."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> S3Server:
        out = open(self._log, "wb")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.s3server", "--port", str(self.port)],
            cwd=PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the moto server exited at start-up; see {self._log}")
            try:
                self.counts()
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the moto server did not answer on {self.url} within 60 s; see {self._log}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def counts(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}{CONTROL_PREFIX}counts", timeout=10) as response:
            data: dict[str, int] = json.loads(response.read())
        return data

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the server and its worker processes have used
        so far, from /proc."""
        assert self._process is not None, "the server is started by the context manager"
        ticks = 0
        for pid in process_tree(self._process.pid):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended since it was listed
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}{CONTROL_PREFIX}reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client_env(self) -> dict[str, str]:
        """Environment for a child that talks to this server with fake credentials only."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_SYNC_"))}
        env.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=self.url,
        )
        return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
