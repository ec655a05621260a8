"""Read catalog and template files, and write render output, without trusting what is on disk."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from pipeline_sync.errors import PipelineSyncError

# Far above any real catalog or template file (the YAML loader refuses documents over 1 MiB
# on its own); it bounds the read itself, so no file makes us hold more than this in memory.
MAX_SOURCE_FILE_BYTES = 4 * 1_048_576

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO planted in the output tree must not block the open
    | getattr(os, "O_NOFOLLOW", 0)
    | os.O_CLOEXEC
)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


class UnsafeFileError(PipelineSyncError):
    """A file is not a regular file inside its directory, is too large, or cannot be read or written.

    The message says what is wrong but not which file: callers put it in their own location.
    """


def read_text_file(path: Path, *, root: Path, what: str, max_bytes: int = MAX_SOURCE_FILE_BYTES) -> str:
    """The UTF-8 text of path (newlines read as Python's text mode reads them).

    path must resolve inside root and be a regular file of at most max_bytes; anything else
    (a FIFO, socket, device, directory, a symlink leading out of root) is refused before it is
    opened, so nothing blocks and nothing unbounded is read. what names the file in messages
    ("catalog file", "template").
    """
    real = _resolve_inside(Path(path), Path(root), what)
    try:
        _check_regular(os.stat(real), what, max_bytes)  # before opening: opening a FIFO blocks
        fd = os.open(real, _READ_FLAGS)
    except OSError as exc:
        raise UnsafeFileError(f"cannot read file: {exc}") from None
    return _read_opened(fd, what, max_bytes)


class SourceReader:
    """read_text_file for the many files of one folder tree (a catalog load), without resolving
    every path again: each folder is resolved once, checked to lie inside root, and opened, and
    its files are then opened relative to that open folder. A file that is not a symlink in its
    folder is read as read_text_file would read it, with the same checks (a regular file, of at
    most max_bytes, checked again once open) and messages; a symlink, or a file the shortcut
    cannot open, is read by read_text_file itself, which resolves it and words any refusal.
    Holding the folder open means a folder swapped for a link meanwhile is never followed. Use it
    as a context manager: leaving closes the folders."""

    def __init__(self, root: Path, *, what: str, max_bytes: int = MAX_SOURCE_FILE_BYTES) -> None:
        self._root = Path(root)
        self._what = what
        self._max_bytes = max_bytes
        self._real_root: Path | None = None
        self._folders: dict[Path, int | None] = {}  # folder -> an open fd of it inside root, else None

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for fd in self._folders.values():
            if fd is not None:
                os.close(fd)
        self._folders.clear()

    def read(self, path: Path) -> str:
        """What read_text_file(path, root=root, what=what, max_bytes=max_bytes) returns, or raises
        for the file as it is when the read gets to it."""
        path = Path(path)
        folder = self._folder(path.parent) if path.name not in ("", ".", "..") else None
        if folder is not None:
            try:
                info = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
                if not stat.S_ISLNK(info.st_mode):
                    _check_regular(info, self._what, self._max_bytes)  # before opening, as above
                    fd = os.open(path.name, _READ_FLAGS, dir_fd=folder)
                    return _read_opened(fd, self._what, self._max_bytes)
            except OSError:
                pass  # read_text_file words the failure, with the file's full path
        return read_text_file(path, root=self._root, what=self._what, max_bytes=self._max_bytes)

    def _folder(self, folder: Path) -> int | None:
        if folder not in self._folders:
            self._folders[folder] = self._open_folder(folder)
        return self._folders[folder]

    def _open_folder(self, folder: Path) -> int | None:
        try:
            if self._real_root is None:
                self._real_root = self._root.resolve(strict=True)
            real = folder.resolve(strict=True)
            if not real.is_relative_to(self._real_root):
                return None
            return os.open(real, _DIR_FLAGS)
        except (OSError, RuntimeError):
            return None


def _read_opened(fd: int, what: str, max_bytes: int) -> str:
    """The text of the file open as fd (closed here), checked again now that it is open."""
    try:
        try:
            info = os.fstat(fd)
            _check_regular(info, what, max_bytes)  # it may have been swapped since the stat
            data = _read_to_end(fd, max_bytes + 1, info.st_size)
        finally:
            os.close(fd)
    except OSError as exc:
        raise UnsafeFileError(f"cannot read file: {exc}") from None
    if len(data) > max_bytes:
        raise UnsafeFileError(_too_large(what, max_bytes))
    return _text_of(data)


# A source file is read in one call of this size (plus one that finds the end), not through a
# buffer of max_bytes: allocating 4 MiB for each of a catalog's thousand small files cost more
# than reading them.
_READ_CHUNK = 65_536


def _read_to_end(fd: int, limit: int, size_hint: int) -> bytes:
    """At most limit bytes of fd, to its end: the file may have grown since its size was taken."""
    parts, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(limit - total, max(size_hint + 1 - total, _READ_CHUNK)))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


def _text_of(data: bytes) -> str:
    """data as UTF-8 text with newlines read as Python's text mode reads them (\r\n and \r as \n)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # worded as text mode words it
        try:
            return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read()
        except UnicodeDecodeError as exc:
            raise UnsafeFileError(f"cannot read file: {exc}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def write_text_file(root: Path, parts: Sequence[str], text: str) -> Path:
    """Write text to root/parts[0]/.../parts[-1], creating the directories below root.

    Never follows a symlink below root: a link (or a non-directory) where a directory is
    expected, or a link or non-regular file where the file goes, is refused and nothing is
    written. root itself is the caller's choice and may be a link.
    """
    for part in parts:
        if part in ("", ".", "..") or "/" in part or "\0" in part:
            raise UnsafeFileError(f"{part!r} is not a plain file or directory name; refusing to write it")
    root = Path(root)
    target = root.joinpath(*parts)
    try:
        root.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeFileError(f"cannot write {target}: {exc}") from None
    try:
        for depth, part in enumerate(parts[:-1], start=1):
            child_fd = _enter_directory(dir_fd, part, root.joinpath(*parts[:depth]))
            os.close(dir_fd)
            dir_fd = child_fd
        _write_at(dir_fd, parts[-1], text, target)
    finally:
        os.close(dir_fd)
    return target


def _resolve_inside(path: Path, root: Path, what: str) -> Path:
    try:
        real = path.resolve(strict=True)
        real_root = root.resolve(strict=True)
    except RuntimeError:  # Python 3.11 reports a symlink loop this way
        raise UnsafeFileError(f"this {what} is a symlink loop; replace it with a regular file") from None
    except OSError as exc:
        raise UnsafeFileError(f"cannot read file: {exc}") from None
    if not real.is_relative_to(real_root):
        folder = f"{root.name or real_root.name}/"
        raise UnsafeFileError(
            f"this {what} leads through a symbolic link to {real}, outside {folder}; "
            f"links may only point inside {folder}, so copy the file in instead"
        )
    return real


def _check_regular(info: os.stat_result, what: str, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(
            f"this {what} is {_kind(info.st_mode)}, not a regular file; replace it with a regular file"
        )
    if info.st_size > max_bytes:
        raise UnsafeFileError(_too_large(what, max_bytes, info.st_size))


def _too_large(what: str, max_bytes: int, size: int | None = None) -> str:
    actual = f" ({size} bytes)" if size is not None else ""
    return f"this {what} is larger than {max_bytes} bytes{actual}; split it or make it smaller"


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "an unknown kind of file")


def _enter_directory(parent_fd: int, name: str, shown: Path) -> int:
    """The fd of directory name inside parent_fd, made if missing; never a symlink's target."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent_fd)
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise UnsafeFileError(_refusal(parent_fd, name, shown, "directory", exc)) from None


def _write_at(dir_fd: int, name: str, text: str, shown: Path) -> None:
    try:
        fd = os.open(name, _WRITE_FLAGS, 0o666, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeFileError(_refusal(dir_fd, name, shown, "regular file", exc)) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeFileError(
                    f"cannot write {shown}: it is {_kind(info.st_mode)}, not a regular file; remove it"
                )
            handle.write(text)
    except OSError as exc:
        raise UnsafeFileError(f"cannot write {shown}: {exc.strerror or exc}") from None


def _refusal(dir_fd: int, name: str, shown: Path, expected: str, exc: OSError) -> str:
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except OSError:
        return f"cannot write {shown}: {exc.strerror or exc}"
    if stat.S_ISLNK(mode):
        return f"cannot write {shown}: it is a symbolic link, and output never goes through links; remove it"
    wrong = not stat.S_ISDIR(mode) if expected == "directory" else not stat.S_ISREG(mode)
    if wrong:
        return f"cannot write {shown}: it is {_kind(mode)}, not a {expected}; remove it"
    return f"cannot write {shown}: {exc.strerror or exc}"
