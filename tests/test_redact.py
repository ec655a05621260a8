"""redact: credentials in URLs and parameters never reach messages, logs or run storage."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from pipeline_sync.redact import host_and_port, redact, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pass@minio:9000/bucket", "https://***@minio:9000/bucket"),
        ("https://ghp_token123@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
        ("http://AKIA:wJalr/K7MDENG+bPx@minio:9000", "http://***@minio:9000"),  # "/" in the secret
        ("https://user:p@ss@host/x", "https://***@host/x"),  # "@" in the password
        ("postgresql+psycopg://app:s3cr3t@db:5432/x", "postgresql+psycopg://***@db:5432/x"),
        (
            'Could not connect to the endpoint URL: "http://u:pw@minio:9000/front50/x.json"',
            'Could not connect to the endpoint URL: "http://***@minio:9000/front50/x.json"',
        ),
        ("two: s3://a:b@h1/x, (https://c:d@h2)", "two: s3://***@h1/x, (https://***@h2)"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F2024&"
            "X-Amz-Signature=abc123&x-amz-security-token=tok",
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=***&"
            "X-Amz-Signature=***&x-amz-security-token=***",
        ),
        (
            "https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIA&Expires=1&Signature=xyz%3D",
            "https://b.s3.amazonaws.com/k?AWSAccessKeyId=***&Expires=1&Signature=***",
        ),
        ("https://h/p?password=hunter2#frag", "https://h/p?password=***#frag"),
        ("https://h/p?TOKEN=t&secret=s&keep=1", "https://h/p?TOKEN=***&secret=***&keep=1"),
        ("login failed: db_password=hunter2 user=app", "login failed: db_password=*** user=app"),
        ("client.secret=abc; api_key=k", "client.secret=***; api_key=***"),
        # Nothing secret: left exactly as it was.
        ("https://minio:9000/bucket", "https://minio:9000/bucket"),
        ("mail alice@example.com about https://h/x", "mail alice@example.com about https://h/x"),
        ("?token=&tokens=5&mytoken=x", "?token=&tokens=5&mytoken=x"),
        ("front50/pipelines/abc/pipeline-metadata.json", "front50/pipelines/abc/pipeline-metadata.json"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent: redacting twice changes nothing more


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@minio:9000", "https://***@minio:9000"),
        ("https://user:pa/ss?#x@minio:9000/b", "https://***@minio:9000/b"),  # anything in the password
        ("http://token@host", "http://***@host"),
        ("https://minio:9000/path?Signature=s", "https://minio:9000/path?Signature=***"),
        ("https://minio:9000", "https://minio:9000"),
        ("minio:9000", "minio:9000"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "hostile", ["a." * 50_000, "x://a" * 30_000, "x://" + "a@" * 50_000, "a_" * 50_000 + "="]
)
def test_redact_is_linear_on_hostile_text(hostile: str) -> None:
    """Error text can hold anything: no pattern may backtrack quadratically."""
    started = time.monotonic()
    redact(hostile)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("url", "default", "expected"),
    [
        ("postgresql://alice:s3cret@db.example.com:5432/front50", "", "db.example.com:5432"),
        ("mysql://root@[::1]:3306/front50", "", "[::1]:3306"),
        ("gate+https://user:pa@ss@gate:8084/api", "", "gate:8084"),
        ("postgresql:///front50", "localhost", "localhost"),
        ("front50+http://front50", "", "front50"),
    ],
)
def test_host_and_port_never_keeps_the_userinfo(url: str, default: str, expected: str) -> None:
    assert host_and_port(urlsplit(url), default) == expected
