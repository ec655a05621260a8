"""A scratch copy of catalog/ and templates/ with proposed edits applied, to plan or render before writing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pipeline_sync.rendering import Sources


@contextmanager
def edited_copy(
    catalog_dir: Path,
    templates_dir: Path,
    texts: Mapping[Path, str],
    links: Mapping[Path, str] | None = None,
) -> Iterator[Sources]:
    """The sources of a temporary copy of both folders in which each path of texts (a real path
    under one of them) holds its new text and each path of links is a link to the name given.

    The copies keep the folders' names, so file names in messages and markers read as the real ones.
    """
    with tempfile.TemporaryDirectory(prefix="pipeline-sync-scratch-") as scratch:
        root = Path(scratch)
        copies = {
            catalog_dir: root / catalog_dir.name,
            templates_dir: root / "templates-copy" / templates_dir.name,
        }
        for real, copy in copies.items():
            shutil.copytree(real, copy, symlinks=True)

        def place(path: Path) -> Path:
            base = catalog_dir if path.is_relative_to(catalog_dir) else templates_dir
            target = copies[base] / path.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            return target

        for path, text in texts.items():
            place(path).write_text(text, encoding="utf-8")
        for path, name in (links or {}).items():
            target = place(path)
            target.unlink(missing_ok=True)
            os.symlink(name, target)
        yield Sources.load(copies[catalog_dir], copies[templates_dir])
