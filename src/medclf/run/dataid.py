"""Which data file a run was trained on. metrics.json records the file's MD5 (``data_md5``), so
a finished run is reused only on the same bytes: a file replaced in place is new data, and one
file under two spellings (``oct.npz``, ``./oct.npz``, a symlink) is one file."""

from __future__ import annotations

from pathlib import Path

from medclf.data.fetch import file_md5
from medclf.data.registry import REGISTRY, get_info

_md5s: dict[tuple, str] = {}  # (path, inode, size, mtime) -> MD5: each file hashed once


def data_md5(path) -> str:
    """The file's MD5, hashed once per process while its inode, size and mtime stay the same."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _md5s:
        _md5s[key] = file_md5(path)
    return _md5s[key]


def data_file(dataset: str, root=None, size: int = 28) -> Path | None:
    """The resolved file a config's ``dataset`` names: a path, or a registry name's cached copy;
    None where there is none."""
    from medclf.data.fetch import find_cached

    if dataset.lower() in REGISTRY:
        path = find_cached(get_info(dataset, size), root)
    else:
        path = Path(dataset).expanduser()
    return path.resolve() if path is not None and path.is_file() else None


def changed_data(metrics: dict, path) -> str | None:
    """Why a finished run's ``metrics`` do not belong to the data file ``path`` (None: they do).
    A run from before medclf recorded the MD5 counts as other data: nothing shows it is the
    same."""
    if not Path(path).is_file():
        return f"its data file {path} is not there now"
    if "data_md5" not in metrics:
        return "it was trained before medclf recorded its data's MD5"
    if metrics["data_md5"] != data_md5(path):
        return f"{Path(path).resolve()} has changed since it was trained (another MD5)"
    return None


def config_data_change(metrics: dict, config: dict, root=None) -> str | None:
    """changed_data for the file ``config["dataset"]`` names now (None for a config that names
    no dataset)."""
    if "dataset" not in config:
        return None
    path = data_file(str(config["dataset"]), root, config.get("size", 28))
    return changed_data(metrics, path or config["dataset"])
