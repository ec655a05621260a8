"""Untrusted files: catalog and template files must be regular files inside their directory, read with
a bound; render --out never writes through a link."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from conftest import MakeProject
from guards import deadline

from pipeline_sync import safefiles
from pipeline_sync.identity import pipeline_id_for
from pipeline_sync.safefiles import (
    MAX_SOURCE_FILE_BYTES,
    SourceReader,
    UnsafeFileError,
    read_text_file,
    write_text_file,
)

PROJECT = Path(__file__).resolve().parent.parent
SERVICE = (
    "name: {name}\nproduct: p\nteam: t\nnamespace: n\ngit_repo: r\nstacks:\n  dev: {{pipelines: [deploy]}}\n"
)
NOT_REGULAR = "this catalog file is {kind}, not a regular file; replace it with a regular file"
OUTSIDE = (
    "this catalog file leads through a symbolic link to {target}, outside catalog/; "
    "links may only point inside catalog/, so copy the file in instead"
)
LINK = "cannot write {path}: it is a symbolic link, and output never goes through links; remove it"


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """A FIFO opened for reading blocks forever: such a hang must fail the test, not stall the run."""
    with deadline(30):
        yield


@pytest.fixture
def root(tmp_path: Path) -> Path:
    catalog = tmp_path / "catalog"
    (catalog / "services").mkdir(parents=True)
    (catalog / "defaults.yaml").write_text("stacks: {dev: {}}\n")
    (tmp_path / "outside.yaml").write_text(SERVICE.format(name="svc"))
    return catalog


class Reader(Protocol):
    def __call__(self, path: Path, *, root: Path, what: str, max_bytes: int = ...) -> str: ...


def read_with_source_reader(
    path: Path, *, root: Path, what: str, max_bytes: int = MAX_SOURCE_FILE_BYTES
) -> str:
    with SourceReader(root, what=what, max_bytes=max_bytes) as reader:
        return reader.read(path)


@pytest.fixture(params=[read_text_file, read_with_source_reader], ids=["read_text_file", "SourceReader"])
def read(request: pytest.FixtureRequest) -> Reader:
    """Every reading guarantee holds for one file alone and for a catalog load's SourceReader."""
    reader: Reader = request.param
    return reader


def plant_fifo(path: Path) -> None:
    os.mkfifo(path)


def plant_socket(path: Path) -> None:
    with contextlib.chdir(path.parent), socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path.name)  # relative: a tmp path can be longer than a socket address


def plant_link(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        (plant_fifo, NOT_REGULAR.format(kind="a FIFO (named pipe)")),
        (plant_socket, NOT_REGULAR.format(kind="a socket")),
        (Path.mkdir, NOT_REGULAR.format(kind="a directory")),
        (plant_link("/dev/zero"), OUTSIDE.format(target="/dev/zero")),
        (plant_link("/etc/passwd"), OUTSIDE.format(target="/etc/passwd")),
        (plant_link("../../outside.yaml"), OUTSIDE.format(target="{tmp}/outside.yaml")),
        (plant_link("svc.yaml"), "this catalog file is a symlink loop; replace it with a regular file"),
        (plant_link("missing.yaml"), "cannot read file: [Errno 2] No such file or directory: '{path}'"),
    ],
)
def test_what_is_not_a_regular_file_inside_the_root_is_refused_unopened(
    read: Reader, root: Path, plant: Callable[[Path], None], expected: str
) -> None:
    path = root / "services" / "svc.yaml"
    plant(path)
    with pytest.raises(UnsafeFileError) as caught:
        read(path, root=root, what="catalog file")
    tmp = root.parent.resolve()
    assert str(caught.value) == expected.format(tmp=tmp, path=root.resolve() / "services" / "missing.yaml")


def test_a_device_is_refused(read: Reader) -> None:
    with pytest.raises(UnsafeFileError) as caught:
        read(Path("/dev/zero"), root=Path("/dev"), what="catalog file")
    assert str(caught.value) == NOT_REGULAR.format(kind="a character device")


def test_a_directory_linked_from_outside_is_refused(read: Reader, root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "svc.yaml").write_text(SERVICE.format(name="svc"))
    (root / "services").rmdir()
    (root / "services").symlink_to(elsewhere)
    with pytest.raises(UnsafeFileError) as caught:
        read(root / "services" / "svc.yaml", root=root, what="catalog file")
    assert str(caught.value) == OUTSIDE.format(target=elsewhere.resolve() / "svc.yaml")


def test_a_link_inside_the_root_is_followed(read: Reader, root: Path) -> None:
    (root / "services" / "alias.yaml").symlink_to("../defaults.yaml")
    text = read(root / "services" / "alias.yaml", root=root, what="catalog file")
    assert text == "stacks: {dev: {}}\n"


def test_text_reads_as_python_text_mode_reads_it(read: Reader, root: Path) -> None:
    path = root / "services" / "svc.yaml"
    path.write_bytes("\ufeffa: 1\r\nb: é\rc: 3\n".encode())
    assert read(path, root=root, what="catalog file") == path.read_text(encoding="utf-8")


def test_random_bytes_read_as_python_text_mode_reads_them(read: Reader, root: Path) -> None:
    """Text, newlines and refusals, byte for byte as open(path, encoding="utf-8").read() has them."""
    rng = random.Random(7)
    alphabet = [b"a", b"\r", b"\n", b"\r\n", "é".encode(), "\u2028".encode(), b"\xff", b"\xc3", b"\x00"]
    path = root / "services" / "svc.yaml"
    refused = 0
    for size in [*range(12), 65_535, 65_536, 65_537, 131_073] * 3:
        data = b"".join(rng.choice(alphabet) for _ in range(size))[:size]
        path.write_bytes(data)
        try:
            expected: str | None = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            expected, message = None, f"cannot read file: {exc}"
        if expected is not None:
            assert read(path, root=root, what="catalog file") == expected
            continue
        refused += 1
        with pytest.raises(UnsafeFileError) as caught:
            read(path, root=root, what="catalog file")
        assert str(caught.value) == message
    assert refused


def test_not_utf8_is_refused(read: Reader, root: Path) -> None:
    path = root / "services" / "svc.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(UnsafeFileError) as caught:
        read(path, root=root, what="catalog file")
    assert str(caught.value) == (
        "cannot read file: 'utf-8' codec can't decode byte 0xff in position 6: invalid start byte"
    )


@pytest.mark.parametrize(("size", "refused"), [(10, False), (11, True)])
def test_size_limit(read: Reader, root: Path, size: int, refused: bool) -> None:
    path = root / "services" / "svc.yaml"
    path.write_text("x" * size)
    if not refused:
        assert read(path, root=root, what="template", max_bytes=10) == "x" * size
        return
    with pytest.raises(UnsafeFileError) as caught:
        read(path, root=root, what="template", max_bytes=10)
    assert str(caught.value) == (
        "this template is larger than 10 bytes (11 bytes); split it or make it smaller"
    )


def test_size_is_checked_before_reading(read: Reader, root: Path) -> None:
    """A sparse 64 GiB file costs nothing on disk: reading it would exhaust memory."""
    path = root / "services" / "svc.yaml"
    path.touch()
    os.truncate(path, 64 << 30)
    started = time.monotonic()
    with pytest.raises(UnsafeFileError) as caught:
        read(path, root=root, what="catalog file")
    assert time.monotonic() - started < 1
    assert str(caught.value) == (
        f"this catalog file is larger than {MAX_SOURCE_FILE_BYTES} bytes ({64 << 30} bytes); "
        "split it or make it smaller"
    )


def swap_before_open(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None]) -> None:
    """The file changes between the checks on its path and the open: the opened file is checked again."""
    real_open = os.open

    def open_after_swap(path: str | Path, flags: int, *args: int, **kwargs: int) -> int:
        if not flags & os.O_DIRECTORY:  # the file's open, not SourceReader's of its folder
            swap()
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(safefiles.os, "open", open_after_swap)


def test_a_fifo_swapped_in_after_the_check_is_refused_without_blocking(
    read: Reader, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = root / "services" / "svc.yaml"
    path.write_text("a: 1\n")
    swap_before_open(monkeypatch, lambda: (path.unlink(), os.mkfifo(path)))
    with pytest.raises(UnsafeFileError) as caught:
        read(path, root=root, what="catalog file")
    assert str(caught.value) == NOT_REGULAR.format(kind="a FIFO (named pipe)")


def test_a_link_swapped_in_after_the_check_is_not_followed(
    read: Reader, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = root / "services" / "svc.yaml"
    path.write_text("a: 1\n")
    swap_before_open(monkeypatch, lambda: (path.unlink(), path.symlink_to("/etc/passwd")))
    with pytest.raises(UnsafeFileError) as caught:
        read(path, root=root, what="catalog file")
    # read_text_file resolved the path before the swap, so the open itself refuses the link;
    # SourceReader's open refuses it too, then resolves the path as it now is, and says where it leads.
    expected = (
        f"cannot read file: [Errno 40] Too many levels of symbolic links: '{path}'"
        if read is read_text_file
        else OUTSIDE.format(target="/etc/passwd")
    )
    assert str(caught.value) == expected


def test_a_file_grown_after_the_check_is_refused(
    read: Reader, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = root / "services" / "svc.yaml"
    path.write_text("a: 1\n")
    swap_before_open(monkeypatch, lambda: path.write_text("x" * 50))
    with pytest.raises(UnsafeFileError) as caught:
        read(path, root=root, what="catalog file", max_bytes=10)
    assert (
        str(caught.value)
        == "this catalog file is larger than 10 bytes (50 bytes); split it or make it smaller"
    )


def test_a_file_growing_while_read_is_cut_at_the_limit(
    read: Reader, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = root / "services" / "svc.yaml"
    path.write_text("a: 1\n")
    real_fstat = os.fstat

    def fstat_then_grow(fd: int) -> os.stat_result:
        info = real_fstat(fd)
        path.write_text("x" * 50)  # same inode: after the last size check, before the read
        return info

    monkeypatch.setattr(safefiles.os, "fstat", fstat_then_grow)
    with pytest.raises(UnsafeFileError) as caught:
        read(path, root=root, what="catalog file", max_bytes=10)
    assert str(caught.value) == "this catalog file is larger than 10 bytes; split it or make it smaller"


def test_a_file_whose_size_lies_is_cut_at_the_limit(read: Reader) -> None:
    """/proc files are regular files of size 0 whatever they hold: only the bounded read catches them."""
    with pytest.raises(UnsafeFileError) as caught:
        read(Path("/proc/self/status"), root=Path("/proc/self"), what="catalog file", max_bytes=10)
    assert str(caught.value) == "this catalog file is larger than 10 bytes; split it or make it smaller"


def test_a_folder_swapped_for_a_link_is_not_followed_by_the_reader_holding_it(
    root: Path, tmp_path: Path
) -> None:
    """SourceReader resolves a folder once and holds it open: a folder swapped for a link to
    elsewhere afterwards never redirects a read (a cached resolved path would follow the link)."""
    services = root / "services"
    (services / "a.yaml").write_text("a: inside\n")
    (services / "b.yaml").write_text("b: inside\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.yaml").write_text("b: secret\n")
    (elsewhere / "c.yaml").write_text("c: secret\n")
    with SourceReader(root, what="catalog file") as reader:
        assert reader.read(services / "a.yaml") == "a: inside\n"
        services.rename(root / "services-before")
        services.symlink_to(elsewhere)
        assert reader.read(services / "b.yaml") == "b: inside\n"
        with pytest.raises(UnsafeFileError) as caught:
            reader.read(services / "c.yaml")
    assert str(caught.value) == OUTSIDE.format(target=elsewhere.resolve() / "c.yaml")


def test_the_reader_closes_the_folders_it_opened(root: Path) -> None:
    (root / "services" / "svc.yaml").write_text("a: 1\n")
    before = set(os.listdir("/proc/self/fd"))
    with SourceReader(root, what="catalog file") as reader:
        reader.read(root / "services" / "svc.yaml")
        reader.read(root / "defaults.yaml")
        assert len(set(os.listdir("/proc/self/fd")) - before) == 2
    assert set(os.listdir("/proc/self/fd")) == before


# --- writing ---------------------------------------------------------------------------------------

PARTS = ("pipelines", "abc", "pipeline-metadata.json")


def test_write_creates_directories_and_replaces_content(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert write_text_file(out, PARTS, "a long first text\n") == out.joinpath(*PARTS)
    write_text_file(out, PARTS, "short\n")
    assert out.joinpath(*PARTS).read_text() == "short\n"


def test_the_root_itself_may_be_a_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to("real")
    write_text_file(tmp_path / "out", PARTS, "x\n")
    assert (tmp_path / "real").joinpath(*PARTS).read_text() == "x\n"


def link_dir(path: Path, outside: Path) -> None:
    path.symlink_to(outside, target_is_directory=True)


def link_file(path: Path, outside: Path) -> None:
    (outside / "victim").write_text("precious\n")
    path.symlink_to(outside / "victim")


def link_dangling(path: Path, outside: Path) -> None:
    path.symlink_to(outside / "created-by-following")


@pytest.mark.parametrize(
    ("depth", "plant", "expected"),
    [
        (1, link_dir, LINK),
        (2, link_dir, LINK),
        (3, link_file, LINK),
        (3, link_dangling, LINK),
        (
            1,
            lambda path, _: path.write_text(""),
            "cannot write {path}: it is a regular file, not a directory; remove it",
        ),
        (
            3,
            lambda path, _: os.mkfifo(path),
            "cannot write {path}: it is a FIFO (named pipe), not a regular file; remove it",
        ),
        (
            3,
            lambda path, _: path.mkdir(),
            "cannot write {path}: it is a directory, not a regular file; remove it",
        ),
    ],
)
def test_write_never_goes_through_a_link_or_into_a_non_file(
    tmp_path: Path, depth: int, plant: Callable[[Path, Path], None], expected: str
) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    out.joinpath(*PARTS[: depth - 1]).mkdir(parents=True, exist_ok=True)
    planted = out.joinpath(*PARTS[:depth])
    plant(planted, outside)
    before = {p.name: p.read_text() for p in outside.iterdir()}
    with pytest.raises(UnsafeFileError) as caught:
        write_text_file(out, PARTS, "written\n")
    assert str(caught.value) == expected.format(path=planted)
    assert {p.name: p.read_text() for p in outside.iterdir()} == before


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "a\0b"])
def test_write_refuses_names_that_are_not_plain(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafeFileError) as caught:
        write_text_file(tmp_path / "out", ("pipelines", bad, "pipeline-metadata.json"), "x\n")
    assert str(caught.value) == f"{bad!r} is not a plain file or directory name; refusing to write it"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


# --- end to end through the CLI ------------------------------------------------------------------------


def limit_memory() -> None:
    """Read of /dev/zero in the CLI: a MemoryError, not an exhausted machine."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def run_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child process: a hang ends in TimeoutExpired, a runaway read in MemoryError."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    command = [sys.executable, "-c", "from pipeline_sync.cli import main; main()"]
    command += ["--catalog", str(root / "catalog"), "--templates", str(root / "templates"), *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=25, preexec_fn=limit_memory
    )


def test_validate_refuses_each_hostile_file_and_validates_the_rest(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path / "p", services={"good": {}}, templates={"deploy": "name: x\nstages: []\n"}
    )
    services, templates = project.catalog_dir / "services", project.templates_dir
    (tmp_path / "escape.yaml").write_text(SERVICE.format(name="escape"))
    os.mkfifo(services / "fifo.yaml")
    (services / "zero.yaml").symlink_to("/dev/zero")
    (services / "escape.yaml").symlink_to(tmp_path / "escape.yaml")
    with (services / "big.yaml").open("w") as big:
        big.write(SERVICE.format(name="big") + "#" * MAX_SOURCE_FILE_BYTES)
    (services / "piped.yaml").write_text(SERVICE.format(name="piped").replace("[deploy]", "[piped]"))
    os.mkfifo(templates / "piped.yaml.j2")

    done = run_cli(project.root, "validate")

    outside = (tmp_path / "escape.yaml").resolve()
    big_size = len(SERVICE.format(name="big")) + MAX_SOURCE_FILE_BYTES
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: catalog/services/big.yaml: this catalog file is larger than {MAX_SOURCE_FILE_BYTES} bytes "
        f"({big_size} bytes); split it or make it smaller",
        f"error: catalog/services/escape.yaml: {OUTSIDE.format(target=outside)}",
        f"error: catalog/services/fifo.yaml: {NOT_REGULAR.format(kind='a FIFO (named pipe)')}",
        f"error: catalog/services/zero.yaml: {OUTSIDE.format(target='/dev/zero')}",
        "note: approvals of stack dev are unsigned (a typed name); declare `approvers:` in "
        "catalog/defaults.yaml to require SSH-signed approvals (README, Signed approvals).",
        "2 targets: 1 valid, 1 invalid; 4 catalog files failed",
    ]
    assert done.stdout.splitlines() == [
        "[piped/dev/piped] templates/piped.yaml.j2: this template is a FIFO (named pipe), "
        "not a regular file; replace it with a regular file"
    ]


def test_render_out_never_writes_through_a_linked_pipeline_directory(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "p", services={"svc": {}, "other": {}})
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    linked = out / "pipelines" / pipeline_id_for("svc/dev/deploy")
    linked.parent.mkdir(parents=True)
    linked.symlink_to(outside, target_is_directory=True)

    done = run_cli(project.root, "render", "--out", str(out))

    written = out / "pipelines" / pipeline_id_for("other/dev/deploy") / "pipeline-metadata.json"
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"error: [svc/dev/deploy] {LINK.format(path=linked)}"]
    assert done.stdout.splitlines() == [f"other/dev/deploy -> {written}"]
    assert list(outside.iterdir()) == []
    assert '"application": "other"' in written.read_text()
