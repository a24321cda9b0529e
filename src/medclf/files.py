"""Nothing half-written: every file medclf writes goes to a temporary name, then is renamed."""

from __future__ import annotations

import os
import secrets
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from medclf.errors import MedclfError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that infer the format
    from it still work); rename it onto ``path`` if the block succeeds, delete it otherwise."""
    path = check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # unique per writer (pid + random): two writers never share, nor rename, a half file
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
)


def check_target(path: str | os.PathLike) -> Path:
    """Refuse to replace anything but a regular file (a device, a FIFO, a folder, a symbolic
    link): writing renames a new file onto the path, which would replace the thing itself."""
    from medclf.errors import ConfigError

    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return path
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):  # a folder: the rename fails (EISDIR)
        return path
    kind = next((name for test, name in KINDS if test(mode)), "not a regular file")
    raise ConfigError(
        f"{path} is {kind}, which medclf never replaces; give the name of a new or regular file"
    )


def check_parent(path: str | os.PathLike) -> Path:
    """Refuse a single output file whose folder does not exist (an output folder, such as the
    ``--out`` of train or reproduce, is created instead): a typo must not create folders."""
    from medclf.errors import ConfigError

    path = Path(path)
    parent = path.parent
    if parent.is_dir():
        return check_target(path)
    if parent.exists():
        raise ConfigError(
            f"cannot write {path}: {parent} is a file, not a folder; choose another path"
        )
    raise ConfigError(
        f"cannot write {path}: the folder {parent} does not exist; create it first "
        f"(mkdir -p {parent}) or choose another path"
    )


class RunLockedError(MedclfError):
    """Another live process owns the run folder; ``pid`` names it."""

    def __init__(self, run_dir: Path, pid: int):
        super().__init__(
            f"{run_dir} is being written by process {pid}; wait for it to finish "
            f"or stop it (kill {pid}), then run again"
        )
        self.run_dir, self.pid = run_dir, pid


LOCK = ".lock"
_held: set[Path] = set()  # lock files this process holds


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, killed but not yet reaped, counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _owner(lock: Path) -> int | None:
    """The pid in a lock file; None if the file is gone; 0 if it holds no pid (yet)."""
    try:
        text = lock.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else 0


def _stale(lock: Path, pid: int) -> bool:
    return not _alive(pid) or (pid == os.getpid() and lock not in _held)


def _take_over(lock: Path, pid: int) -> None:
    """Remove a stale lock held by dead ``pid``, unless someone replaced it meanwhile."""
    aside = lock.with_name(f"{LOCK}.stale.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return  # another process took it over first
    if _owner(aside) != pid:  # a fresh lock replaced the stale one: put it back
        with suppress(FileExistsError):
            os.link(aside, lock)
    aside.unlink(missing_ok=True)


@contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Own ``run_dir`` for the block: ``RUN_DIR/.lock`` holds this process's pid, created with
    O_CREAT|O_EXCL. A lock whose pid is dead (a killed run) is taken over; one held by a live
    process raises RunLockedError naming its pid. Not re-entrant."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK
    empty_since = None
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _owner(lock)
            if pid is None:
                continue  # released meanwhile: try again
            if pid == 0:  # created but its pid not yet written; empty for 2 s: its writer died
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since < 2:
                    time.sleep(0.05)
                    continue
            elif not _stale(lock, pid):
                raise RunLockedError(run_dir, pid) from None
            _take_over(lock, pid)
            empty_since = None
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        break
    _held.add(lock)
    try:
        yield lock
    finally:
        _held.discard(lock)
        if _owner(lock) == os.getpid():
            lock.unlink(missing_ok=True)
