"""The bench's S3 server: what it serves is moto's answer, whatever it does to answer sooner."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from moto.core.serialize import TimestampSerializer
from moto.moto_server import werkzeug_app
from moto.moto_server.werkzeug_app import create_backend_app
from werkzeug.test import Client

from bench.s3server import AS_SHIPPED_ENV, CountingApp, remember_timestamps, wsgi_app

HOST = {"Host": "localhost"}
FORMATS = ("iso8601", "iso8601_zeroed", "rfc822", "unixtimestamp")


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's own conversion is put back after the test, whatever it wrapped."""
    original = TimestampSerializer.__dict__["_convert_timestamp_to_str"]
    monkeypatch.setattr(TimestampSerializer, "_convert_timestamp_to_str", original)


def _values() -> list[Any]:
    instant = datetime(2026, 12, 1, 17, 16, 17, 123456, tzinfo=UTC)
    return [
        instant,
        instant.replace(microsecond=0),
        instant.replace(tzinfo=None),  # naive: taken as UTC
        instant.astimezone(timezone(timedelta(hours=2))),  # equal (and hashed) as the first
        instant.astimezone(timezone(timedelta(hours=-5, minutes=-30))),
        "2026-12-01T17:16:17.123456Z",
        "2026-12-01T19:16:17+02:00",
        1764609377,
        1764609377.5,
    ]


def test_a_remembered_timestamp_is_the_text_moto_makes(restored: None) -> None:
    plain = TimestampSerializer("iso8601")
    expected = {(repr(v), f): plain._convert_timestamp_to_str(v, f) for v in _values() for f in FORMATS}
    assert remember_timestamps() is True
    assert remember_timestamps() is True  # wrapped once, however often asked
    kept = TimestampSerializer("iso8601")
    for _ in range(2):  # the first call converts, the second finds it
        for value in _values():
            for fmt in FORMATS:
                assert kept._convert_timestamp_to_str(value, fmt) == expected[(repr(value), fmt)]


def test_a_moto_without_the_converter_is_served_as_it_is() -> None:
    class Elsewhere:
        pass

    assert remember_timestamps(Elsewhere) is False
    assert not hasattr(Elsewhere, "_convert_timestamp_to_str")


def _seeded(app: Any, bucket: str) -> None:
    client = Client(app)
    assert client.put(f"/{bucket}", headers=HOST).status_code == 200
    for key in ["a", "b/c%20d", "z%C3%A9", "zz"]:
        assert client.put(f"/{bucket}/{key}", data=b"{}", headers=HOST).status_code == 200


def _answers(app: Any, bucket: str = "bench-s3server") -> list[tuple[str, bytes, list[tuple[str, str]]]]:
    """A listing (in pages of 2), a GET, a HEAD and two misses, with moto's request ids blanked."""
    client = Client(app)
    out = []
    for path, method in [
        (f"/{bucket}?list-type=2&max-keys=2", "GET"),
        (f"/{bucket}?list-type=2&max-keys=2&start-after=b%2Fc%20d", "GET"),
        (f"/{bucket}?list-type=2", "GET"),
        (f"/{bucket}/b/c%20d", "GET"),
        (f"/{bucket}/z%C3%A9", "HEAD"),
        (f"/{bucket}/missing", "GET"),
        (f"/{bucket}-nonesuch/a", "GET"),
    ]:
        response = client.open(path, method=method, headers=HOST)
        headers = sorted((k, v) for k, v in response.headers.items() if "requestid" not in k.lower())
        out.append((response.status, re.sub(rb"<RequestId>[^<]*</RequestId>", b"", response.data), headers))
    return out


def test_the_server_answers_as_moto_does_with_timestamps_remembered(restored: None) -> None:
    app = CountingApp(create_backend_app("s3"))
    _seeded(app, "bench-s3server")
    before = _answers(app)
    assert remember_timestamps() is True
    assert _answers(app) == before
    assert _answers(app) == before  # answered again from what was remembered
    assert b"<LastModified>" in before[0][1]
    assert app.counts["ListObjectsV2"] == 9


def _without_cors(answers: list[tuple[str, bytes, list[tuple[str, str]]]]) -> list[Any]:
    return [(s, b, [(k, v) for k, v in h if not k.startswith("Access-Control-")]) for s, b, h in answers]


def test_the_server_answers_as_moto_server_does_but_for_its_cors_headers(
    restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of Flask's debug mode and without CORS, the bench's app answers every request, an
    error too, as moto_server's app does, less the headers only a browser reads."""
    monkeypatch.setattr(werkzeug_app, "DISABLE_GLOBAL_CORS", False)  # moto_server's default
    monkeypatch.delenv(AS_SHIPPED_ENV, raising=False)
    shipped = CountingApp(create_backend_app("s3"))
    _seeded(shipped, "bench-s3server-cors")  # a bucket of its own: moto's backend is shared
    before = _answers(shipped, "bench-s3server-cors")
    assert any(k.startswith("Access-Control-") for k, _ in before[3][2])  # moto_server's CORS
    assert [status for status, _, _ in before[-2:]] == ["404 NOT FOUND"] * 2  # no such key, bucket
    served = wsgi_app()
    assert isinstance(served, CountingApp) and served.app.debug is False  # type: ignore[attr-defined]
    answers = _answers(served, "bench-s3server-cors")
    assert answers == _without_cors(before)
    assert answers != before

    monkeypatch.setattr(werkzeug_app, "DISABLE_GLOBAL_CORS", False)
    monkeypatch.setenv(AS_SHIPPED_ENV, "1")
    as_shipped = wsgi_app()
    assert isinstance(as_shipped, CountingApp) and as_shipped.app.debug is True  # type: ignore[attr-defined]
    assert _answers(as_shipped, "bench-s3server-cors") == before
