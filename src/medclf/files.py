"""Nothing half-written: every file medclf writes goes to a temporary name, then is renamed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that infer the format
    from it still work); rename it onto ``path`` if the block succeeds, delete it otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_parent(path: str | os.PathLike) -> Path:
    """Refuse a single output file whose folder does not exist (an output folder, such as the
    ``--out`` of train or reproduce, is created instead): a typo must not create folders."""
    from medclf.errors import ConfigError

    path = Path(path)
    parent = path.parent
    if parent.is_dir():
        return path
    if parent.exists():
        raise ConfigError(f"cannot write {path}: {parent} is a file, not a folder; "
                          "choose another path")  # fmt: skip
    raise ConfigError(f"cannot write {path}: the folder {parent} does not exist; create it first "
                      f"(mkdir -p {parent}) or choose another path")  # fmt: skip

