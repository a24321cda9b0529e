"""Download MedMNIST files into a cache, checking the MD5 before anything reads them.

pooch's HTTP downloader streams a download into a uniquely named partial file beside the target
(``.NAME.XXXX.part``), medclf retries it from the start, and it is renamed onto the real name
only once its MD5 (``pooch.file_hash``) matches, so a killed or damaged download never leaves a
file under the real name. Ctrl-C and errors remove the partial
file at once; one left by a killed process is removed by the next download into that folder once
nobody has written to it for ``STALE_SECONDS``.

A mirror is an http(s):// folder URL or a local folder (also as a file:// URL); other schemes are
refused. A genuine file already in MedMNIST's own cache (``~/.medmnist``, same file names) is
used where it lies after its MD5 check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pooch
import requests

from medclf.data.errors import MirrorError, UnreadableError
from medclf.data.registry import DatasetInfo, get_info
from medclf.errors import ChecksumError, DataError, DownloadError

ENV_ROOT = "MEDCLF_DATA"
ENV_MIRROR = "MEDCLF_MIRROR"
MEDMNIST_ROOT = Path("~/.medmnist")  # the medmnist package's default cache folder
TIMEOUT = (10, 60)  # seconds to connect, seconds between bytes: Zenodo is known to hang
RETRIES = 3
CHUNK = 1 << 20
STALE_SECONDS = 600  # a partial file nobody wrote to for this long belongs to a dead download
# Our partial files, and the ``tmpXXXXXXXX`` files older medclf versions (pooch) left behind.
LEFTOVER = re.compile(r"\..+\.npz\.[^.]+\.part|tmp[a-z0-9_]{8}")


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root``, else ``$MEDCLF_DATA``, else the per-user cache folder."""
    chosen = root or os.environ.get(ENV_ROOT)
    return Path(chosen).expanduser() if chosen else Path(pooch.os_cache("medclf"))


def dataset_path(info: DatasetInfo, root: str | os.PathLike | None = None) -> Path:
    """Where medclf keeps (and downloads) ``info``'s file."""
    return cache_root(root) / info.filename


def synthetic_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where ``medclf reproduce`` caches its full-size synthetic look-alike of ``name``."""
    return cache_root(root) / f"{name.lower()}-synthetic.npz"


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    try:
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
    except OSError as err:
        raise UnreadableError(
            f"{path} cannot be read ({err.strerror or err}); fix its permissions (chmod u+r) "
            "or delete it and fetch it again"
        ) from err
    return digest.hexdigest()


def md5_matches(path: Path, info: DatasetInfo) -> bool:
    """True for a readable file with the MD5 of a genuine release of ``info``."""
    return path.is_file() and info.release(file_md5(path)) is not None


def check(path: Path, info: DatasetInfo) -> str:
    """'ok', 'ok (v2 release)', 'missing', 'unreadable' or 'bad checksum'."""
    if not path.is_file():
        return "missing"
    try:
        release = info.release(file_md5(path))
    except UnreadableError:
        return "unreadable"
    return {"v3": "ok", "v2": "ok (v2 release)"}.get(release, "bad checksum")


def find_cached(info: DatasetInfo, root: str | os.PathLike | None = None) -> Path | None:
    """A genuine copy of ``info``'s file: in medclf's cache, else in MedMNIST's, else None."""
    for path in (dataset_path(info, root), MEDMNIST_ROOT.expanduser() / info.filename):
        if path.is_file() and check(path, info).startswith("ok"):
            return path
    return None


def source_url(info: DatasetInfo, mirror: str | None = None) -> str:
    """What to fetch: a URL in the mirror (``--mirror`` or ``$MEDCLF_MIRROR``), the file's
    path in a local mirror folder, or Zenodo's URL."""
    mirror = mirror or os.environ.get(ENV_MIRROR)
    if not mirror:
        return info.url
    scheme = urlsplit(mirror).scheme.lower()
    if scheme in ("http", "https"):
        return f"{mirror.rstrip('/')}/{info.filename}"
    if scheme == "file":
        folder = Path(url2pathname(urlsplit(mirror).path))
    elif len(scheme) > 1:  # one letter is a Windows drive
        raise MirrorError(
            f"mirror '{mirror}' uses the unsupported scheme '{scheme}://', so nothing was "
            "downloaded; give an http:// or https:// folder URL, or a local folder"
        )
    else:
        folder = Path(mirror).expanduser()
    if not folder.is_dir():
        raise MirrorError(
            f"mirror '{mirror}' is neither an http(s):// URL nor an existing folder, so nothing "
            f"was downloaded; give a URL or the folder that holds {info.filename}"
        )
    return str(folder / info.filename)


def download(
    name: str,
    root: str | os.PathLike | None = None,
    mirror: str | None = None,
    retries: int = RETRIES,
    size: int = 28,
    progress: bool = True,
) -> Path:
    """Bring dataset ``name`` at image side ``size`` into the cache and return its path.

    A genuine cached file (medclf's cache or MedMNIST's ``~/.medmnist``) is reused without
    touching the network; one with the wrong MD5 is reported (a warning) and fetched again.
    """
    info = get_info(name, size)
    target = dataset_path(info, root)
    found = find_cached(info, root)
    if found:
        return found
    state = check(target, info)
    if state != "missing":
        why = "is unreadable" if state == "unreadable" else "has the wrong MD5 (damaged or partial)"
        logging.getLogger("medclf").warning("%s %s; fetching it again", target, why)
    src = source_url(info, mirror)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{info.filename}.", suffix=".part", dir=target.parent)
    except OSError as err:
        raise DataError(
            f"cannot write into {target.parent} ({err.strerror or err}); choose a writable "
            f"data folder with --root or ${ENV_ROOT}"
        ) from err
    try:
        with os.fdopen(fd, "wb") as out:
            if src.startswith(("http://", "https://")):
                _fetch(src, out, info, target, retries, progress)
            else:
                _copy(src, out, info)
        if info.release(pooch.file_hash(tmp, alg="md5")) is None:
            raise ChecksumError(
                f"the file from {src} does not have the MD5 {info.md5}; check the mirror or "
                f"place the genuine {info.filename} in {target.parent}"
            )
        os.replace(tmp, target)
    except OSError as err:  # full disk or a folder gone while writing
        raise DataError(
            f"could not write {target} ({err.strerror or err}); free space or choose another "
            f"folder with --root or ${ENV_ROOT}"
        ) from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _fetch(url: str, out, info: DatasetInfo, target: Path, retries: int, progress: bool) -> None:
    """Download ``url`` into ``out`` with pooch's HTTP downloader, retrying from the start."""
    bar = _Progress(out, info.filename) if progress else None
    sink = out if bar is None else bar  # pooch writes into the bar, which writes into out
    try:
        for attempt in range(retries + 1):
            out.seek(0)
            out.truncate()
            if bar is not None:
                bar.restart()
            downloader = pooch.HTTPDownloader(
                progressbar=False if bar is None else bar, timeout=TIMEOUT, chunk_size=CHUNK
            )
            try:
                downloader(url, sink, None)
                return
            except requests.RequestException as err:
                if attempt < retries:
                    time.sleep(min(2**attempt, 10))
                    continue
                why = (
                    f"HTTP {err.response.status_code} {err.response.reason}"
                    if isinstance(err, requests.HTTPError) and err.response is not None
                    else type(err).__name__
                )
                raise DownloadError(
                    f"could not download {url} ({why}); place {info.filename} by hand in "
                    f"{target.parent} (or set {ENV_ROOT}), use --mirror URL, or run offline on "
                    f"a synthetic file from 'medclf data synth --like {info.name} --out FILE'"
                ) from err
    finally:
        if bar is not None:
            bar.done()


class _Progress:
    """One progress bar for a download and its retries, drawn from the first byte received.

    pooch's downloader writes into it and hands it the server's Content-Length as ``total``
    (0 when none is sent: the bar then counts bytes without a total). A server that cannot be
    reached draws nothing. The bar counts the bytes written, not pooch's whole-chunk updates,
    which overshoot on the last chunk, so pooch's ``update``/``reset``/``close`` do nothing."""

    def __init__(self, out, desc: str):
        self.out, self.desc = out, desc
        self.total = 0  # set by pooch before each attempt's first write
        self.bar = None
        self.fresh = True

    def restart(self) -> None:
        """A new attempt: its first byte starts the bar again from zero."""
        self.fresh = True

    def __bool__(self) -> bool:  # pooch hands a truthy bar the total
        return True

    def write(self, data: bytes) -> None:
        from tqdm.auto import tqdm

        self.out.write(data)
        if self.bar is None:
            self.bar = tqdm(
                total=self.total or None, unit="B", unit_scale=True, desc=self.desc, leave=False
            )
        elif self.fresh:
            self.bar.reset(total=self.total or None)
        self.fresh = False
        self.bar.update(len(data))

    def flush(self) -> None:
        self.out.flush()

    def update(self, n: int) -> None:
        pass

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass

    def done(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _copy(src: str, out, info: DatasetInfo) -> None:
    """Copy a file from a local mirror folder into ``out``."""
    path = Path(src)
    if not path.is_file():
        raise DownloadError(
            f"the mirror folder {path.parent} has no {info.filename}; place it there or use "
            "another mirror"
        )
    try:
        with open(path, "rb") as f:
            shutil.copyfileobj(f, out, CHUNK)
    except PermissionError as err:
        raise UnreadableError(
            f"{path} in the mirror folder cannot be read ({err.strerror or err}); "
            "fix its permissions"
        ) from err


def _remove_leftovers(folder: Path) -> None:
    """Delete partial files of killed downloads that nobody has written to for a while."""
    now = time.time()
    for path in folder.iterdir():
        try:
            if LEFTOVER.fullmatch(path.name) and now - path.stat().st_mtime > STALE_SECONDS:
                path.unlink()
        except OSError:
            pass  # gone already, or not ours to delete


def verify(
    names: list[str], root: str | os.PathLike | None = None, size: int = 28
) -> dict[str, str]:
    """Status of each named cached file, keyed by file name without .npz (see ``check``).

    A file found only in MedMNIST's cache is checked there."""
    status = {}
    for name in names:
        info = get_info(name, size)
        path = dataset_path(info, root)
        medmnist = MEDMNIST_ROOT.expanduser() / info.filename
        if not path.exists() and medmnist.exists():
            path = medmnist
        status[info.key] = check(path, info)
    return status
