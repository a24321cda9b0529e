"""Download MedMNIST files into a cache, checking the MD5 before anything reads them.

pooch does the transfer: it streams into a temporary file beside the target, checks the hash
and only then renames, so a killed or damaged download never leaves a file under the real name.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pooch

from medclf.data.registry import DatasetInfo, get_info
from medclf.errors import ChecksumError, DownloadError

ENV_ROOT = "MEDCLF_DATA"
ENV_MIRROR = "MEDCLF_MIRROR"
TIMEOUT = (10, 60)  # seconds to connect, seconds between bytes: Zenodo is known to hang
RETRIES = 3


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root``, else ``$MEDCLF_DATA``, else the per-user cache folder."""
    chosen = root or os.environ.get(ENV_ROOT)
    return Path(chosen).expanduser() if chosen else Path(pooch.os_cache("medclf"))


def dataset_path(info: DatasetInfo, root: str | os.PathLike | None = None) -> Path:
    return cache_root(root) / info.filename


def source_url(info: DatasetInfo, mirror: str | None = None) -> str:
    """The URL to fetch from: the mirror folder (``--mirror`` or ``$MEDCLF_MIRROR``) or Zenodo."""
    mirror = mirror or os.environ.get(ENV_MIRROR)
    return f"{mirror.rstrip('/')}/{info.filename}" if mirror else info.url


def md5_matches(path: Path, info: DatasetInfo) -> bool:
    return path.is_file() and pooch.file_hash(str(path), alg="md5") == info.md5


def download(
    name: str,
    root: str | os.PathLike | None = None,
    mirror: str | None = None,
    retries: int = RETRIES,
    progress: bool = True,
) -> Path:
    """Bring dataset ``name`` into the cache and return its path.

    A cached file with the right MD5 is reused without touching the network; one with the
    wrong MD5 is reported (a warning) and fetched again.
    """
    info = get_info(name)
    target = dataset_path(info, root)
    if md5_matches(target, info):
        return target
    if target.exists():
        logging.getLogger("medclf").warning(
            "%s has the wrong MD5 (damaged or partial); fetching it again", target
        )
    url = source_url(info, mirror)
    fetcher = pooch.create(
        path=target.parent,
        base_url="",
        registry={info.filename: f"md5:{info.md5}"},
        urls={info.filename: url},
        retry_if_failed=retries,
    )
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=TIMEOUT)
    quiet = pooch.get_logger()
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        return Path(fetcher.fetch(info.filename, downloader=downloader))
    except ValueError as err:  # pooch's hash mismatch
        raise ChecksumError(
            f"the file downloaded from {url} does not have the MD5 {info.md5}; "
            f"check the mirror or place the genuine {info.filename} in {target.parent}"
        ) from err
    except Exception as err:  # requests' connection, timeout and HTTP errors
        raise DownloadError(
            f"could not download {url} ({type(err).__name__}); place {info.filename} "
            f"by hand in {target.parent} (or set {ENV_ROOT}), use --mirror URL, or run offline "
            f"on a synthetic file from 'medclf data synth --like {info.name} --out FILE'"
        ) from err
    finally:
        quiet.setLevel(level)


def verify(names: list[str], root: str | os.PathLike | None = None) -> dict[str, str]:
    """Status of each named cached file: 'ok', 'missing' or 'bad checksum'."""
    status = {}
    for name in names:
        info = get_info(name)
        path = dataset_path(info, root)
        if not path.exists():
            status[info.name] = "missing"
        else:
            status[info.name] = "ok" if md5_matches(path, info) else "bad checksum"
    return status
