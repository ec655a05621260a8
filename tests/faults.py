"""Fault injection for S3 tests: a moto HTTP server, seeded botocore faults, and a kill switch.

Faults are injected by a botocore `before-send` hook on the client under test, so each
request's fate is decided by a seeded random generator:

- before the request reaches the server: HTTP 500, 503 SlowDown, a connect timeout, a reset;
- after the server has processed it (the response is lost): a read timeout, a reset, or a 500.
  The hook forwards the signed request to the server itself, then pretends the answer never came.

Run as a script (`python tests/faults.py kill ...`), it applies a saved approval in a child
process that SIGKILLs itself around its Nth PutObject: a process dying mid-plan.

"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import urllib3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError

CREDENTIALS = {"aws_access_key_id": "faults", "aws_secret_access_key": "faults", "region_name": "us-east-1"}

# (name, reaches the server?)
FAULTS = (
    ("error-500", False),
    ("slowdown-503", False),
    ("connect-timeout", False),
    ("reset", False),
    ("read-timeout-after-write", True),
    ("reset-after-write", True),
    ("error-500-after-write", True),
)
_ERROR_BODY = (
    "<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
)


@contextlib.contextmanager
def atomic_conditional_writes() -> Iterator[None]:
    """Make moto's conditional PUT and DELETE atomic, as S3's are.

    moto checks If-Match / If-None-Match and then writes, without a lock: two requests
    served by two server threads can both pass the check. S3 does not allow that, and the
    race tests are about pipeline-sync, not moto, so they serialise those two handlers.
    """
    from moto.s3.responses import S3Response

    lock = threading.Lock()
    originals = {name: getattr(S3Response, name) for name in ("put_object", "delete_object")}

    def locked(original: Callable[..., Any]) -> Callable[..., Any]:
        def handler(self: Any) -> Any:
            with lock:
                return original(self)

        return handler

    for name, original in originals.items():
        setattr(S3Response, name, locked(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(S3Response, name, original)


def s3_client(url: str, *, attempts: int = 5) -> Any:
    """A client like make_s3_client's (standard retries), pointed at the moto server."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client("s3", endpoint_url=url, config=config, **CREDENTIALS)


@contextlib.contextmanager
def instant_retries() -> Iterator[None]:
    """Retry at once instead of botocore's exponential backoff (seconds per retry)."""
    from botocore.retries.standard import ExponentialBackoff

    original = ExponentialBackoff.delay_amount
    ExponentialBackoff.delay_amount = lambda self, context: 0.0  # type: ignore[method-assign]
    try:
        yield
    finally:
        ExponentialBackoff.delay_amount = original  # type: ignore[method-assign]


@dataclass
class FaultInjector:
    """A seeded `before-send` hook: each request fails with probability rate, in one of FAULTS."""

    seed: int
    rate: float
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (operation, url path, fault)
    _rng: random.Random = field(init=False)
    _http: urllib3.PoolManager = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._http = urllib3.PoolManager()

    def install(self, client: Any) -> None:
        client.meta.events.register("before-send.s3", self)

    attach = install

    @property
    def injected(self) -> Counter[str]:
        """How many of each fault were injected."""
        return Counter(fault for _, _, fault in self.log)

    def __call__(self, request: Any, event_name: str = "", **_: Any) -> AWSResponse | None:
        if self._rng.random() >= self.rate:
            return None
        fault, reaches_server = self._rng.choice(FAULTS)
        operation = event_name.rsplit(".", 1)[-1]
        self.log.append((operation, request.url.split("?")[0].split("/", 3)[-1], fault))
        if reaches_server:
            forward(self._http, request)
        if fault.startswith("error-500"):
            return error_response(request.url, 500, "InternalError", "We encountered an internal error.")
        if fault == "slowdown-503":
            return error_response(request.url, 503, "SlowDown", "Please reduce your request rate.")
        if fault == "connect-timeout":
            raise ConnectTimeoutError(endpoint_url=request.url)
        if fault == "read-timeout-after-write":
            raise ReadTimeoutError(endpoint_url=request.url)
        raise ConnectionClosedError(endpoint_url=request.url)

    def faults(self) -> list[str]:
        return [fault for _, _, fault in self.log]


def forward(http: urllib3.PoolManager, request: Any) -> int:
    """Send the already-signed request to the server, as the real transport would."""
    body = request.body
    if hasattr(body, "read"):
        position = body.tell()
        data = body.read()
        body.seek(position)
    else:
        data = body
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    response = http.request(request.method, request.url, body=data, headers=headers, retries=False)
    return int(response.status)


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def error_response(url: str, status: int, code: str, message: str) -> AWSResponse:
    body = _ERROR_BODY.format(code=code, message=message).encode()
    headers = {"Content-Type": "application/xml", "Content-Length": str(len(body))}
    return AWSResponse(url, status, headers, _RawBody(body))


@dataclass
class KillSwitch:
    """SIGKILL this process at the Nth PutObject of a pipeline object, before or after it is sent."""

    after: int
    when: str  # "before" (the write never happens) or "after" (it lands, nothing after it does)
    seen: int = 0

    def install(self, client: Any) -> None:
        client.meta.events.register("before-send.s3.PutObject", self._before)
        client.meta.events.register("after-call.s3.PutObject", self._after)

    def _before(self, request: Any, **_: Any) -> None:
        if "/pipelines/" in request.url and not request.url.endswith("last-modified.json"):
            self.seen += 1
            if self.when == "before" and self.seen == self.after:
                os.kill(os.getpid(), signal.SIGKILL)

    def _after(self, **_: Any) -> None:
        if self.when == "after" and self.seen == self.after:
            os.kill(os.getpid(), signal.SIGKILL)


def _kill_main(args: argparse.Namespace) -> int:
    from pipeline_sync import engine
    from pipeline_sync.rendering import Sources
    from pipeline_sync.store.s3 import S3Settings, S3Store

    client = s3_client(args.endpoint)
    KillSwitch(args.after, args.when).install(client)
    settings = S3Settings(bucket=args.bucket, endpoint_url=args.endpoint, use_cache=False, max_workers=1)
    store = S3Store(settings, client=client)
    root = Path(args.project)
    workspace = Sources.load(root / "catalog", root / "templates")
    approved = json.loads(Path(args.approved).read_text())
    results = engine.apply(workspace, store, approved, approver="killed-run")
    print(json.dumps([[r.key, r.outcome] for r in results]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    kill = sub.add_parser("kill", help="apply approvals, SIGKILL at the Nth pipeline PutObject")
    kill.add_argument("--endpoint", required=True)
    kill.add_argument("--bucket", required=True)
    kill.add_argument("--project", required=True)
    kill.add_argument("--approved", required=True, help="JSON file: {partition key: plan digest}")
    kill.add_argument("--after", type=int, required=True)
    kill.add_argument("--when", choices=["before", "after"], required=True)
    return _kill_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
