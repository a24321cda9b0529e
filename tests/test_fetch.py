"""The download path over real HTTP, against a server on 127.0.0.1 that each test starts."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from medclf.cli import cli
from medclf.data import fetch, registry
from medclf.data.errors import MirrorError, UnreadableError
from medclf.errors import ChecksumError, DataError, DownloadError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


class Handler(BaseHTTPRequestHandler):
    # "ok", "corrupt", "cut" (server gone mid-file), "flaky" (cut once), "missing" or
    # "nolength" (no Content-Length: the body ends when the connection closes)
    mode = "ok"
    hits = 0
    paths: list[str] = []

    def do_GET(self):
        type(self).hits += 1
        type(self).paths.append(self.path)
        if self.mode == "missing":
            self.send_error(404)
            return
        body = PAYLOAD if self.mode != "corrupt" else PAYLOAD[::-1]
        self.send_response(200)
        if self.mode != "nolength":
            self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.mode == "cut" or (self.mode == "flaky" and type(self).hits == 1):
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.close()  # the rest never arrives
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch, tmp_path_factory):
    """Serve PAYLOAD as tinymnist.npz; register a dataset whose MD5 is PAYLOAD's."""
    Handler.mode, Handler.hits, Handler.paths = "ok", 0, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    info = replace(
        registry.REGISTRY["octmnist"], name="tinymnist", md5=hashlib.md5(PAYLOAD).hexdigest()
    )
    monkeypatch.setitem(registry.REGISTRY, "tinymnist", info)
    monkeypatch.setitem(registry.SIZED, ("tinymnist", 28), info)
    monkeypatch.setitem(registry.SIZED, ("tinymnist", 64), replace(info, size=64))
    monkeypatch.setattr(fetch, "MEDMNIST_ROOT", tmp_path_factory.mktemp("no-medmnist"))
    monkeypatch.delenv(fetch.ENV_ROOT, raising=False)
    monkeypatch.delenv(fetch.ENV_MIRROR, raising=False)
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _download(root, mirror, **kw):
    return fetch.download("tinymnist", root=root, mirror=mirror, retries=0, progress=False, **kw)


def test_download_verifies_and_places_the_file(tmp_path, server):
    _, url = server
    path = _download(tmp_path, url)
    assert path == tmp_path / "tinymnist.npz"
    assert path.read_bytes() == PAYLOAD
    assert fetch.verify(["tinymnist"], tmp_path) == {"tinymnist": "ok"}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_checksum_mismatch_is_refused_and_leaves_nothing(tmp_path, server):
    _, url = server
    Handler.mode = "corrupt"
    with pytest.raises(ChecksumError, match="does not have the MD5"):
        _download(tmp_path, url)
    assert list(tmp_path.iterdir()) == []


def test_server_gone_mid_file_leaves_no_partial_file(tmp_path, server):
    _, url = server
    Handler.mode = "cut"
    with pytest.raises(DownloadError, match="place tinymnist.npz by hand in"):
        _download(tmp_path, url)
    assert list(tmp_path.iterdir()) == []


def test_cut_download_is_retried_from_the_start(tmp_path, server, monkeypatch):
    _, url = server
    Handler.mode = "flaky"
    monkeypatch.setattr(fetch.time, "sleep", lambda seconds: None)
    path = fetch.download("tinymnist", root=tmp_path, mirror=url, retries=1, progress=False)
    assert path.read_bytes() == PAYLOAD and Handler.hits == 2
    assert list(tmp_path.iterdir()) == [path]


def test_progress_bar_names_the_file_and_its_size(tmp_path, server, capsys):
    _, url = server
    path = fetch.download("tinymnist", root=tmp_path, mirror=url, retries=0, progress=True)
    assert path.read_bytes() == PAYLOAD
    err = capsys.readouterr().err
    assert "tinymnist.npz" in err and "102k" in err  # the total pooch read from Content-Length


@pytest.fixture
def bars(monkeypatch):
    """Every progress bar fetch draws, as (total, bytes counted), read when it is closed."""
    import tqdm.auto

    drawn = []

    class Recorded(tqdm.auto.tqdm):
        def close(self):
            if not self.disable and self not in [bar for bar, _ in drawn]:
                drawn.append((self, self.n))
            super().close()

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    monkeypatch.setattr(fetch.time, "sleep", lambda seconds: None)
    return lambda: [(bar.total, n) for bar, n in drawn]


def test_unreachable_server_draws_no_progress_bar(tmp_path, server, bars, capsys):
    httpd, url = server
    httpd.shutdown()
    httpd.server_close()
    with pytest.raises(DownloadError, match="could not download"):
        fetch.download("tinymnist", root=tmp_path, mirror=url, retries=2, progress=True)
    assert bars() == [] and capsys.readouterr().err == ""  # no bar per retry, no bogus total


def test_progress_bar_without_content_length_has_no_total(tmp_path, server, bars, capsys):
    _, url = server
    Handler.mode = "nolength"
    path = fetch.download("tinymnist", root=tmp_path, mirror=url, retries=0, progress=True)
    assert path.read_bytes() == PAYLOAD
    assert bars() == [(None, len(PAYLOAD))]  # counts the bytes, claims no size
    err = capsys.readouterr().err
    assert "tinymnist.npz: 0.00B [" in err and not re.search(r"\d/\d", err)  # no "n/total"


@pytest.mark.parametrize(("mode", "retries"), [("flaky", 2), ("cut", 2)])
def test_retried_download_draws_one_bar_with_the_real_total(
    tmp_path, server, bars, capsys, monkeypatch, mode, retries
):
    _, url = server
    Handler.mode = mode
    monkeypatch.setattr(fetch, "CHUNK", 4096)  # so that the cut attempts write data too
    try:
        fetch.download("tinymnist", root=tmp_path, mirror=url, retries=retries, progress=True)
    except DownloadError:
        assert mode == "cut"
    [(total, counted)] = bars()  # one bar, reset for each attempt
    assert total == len(PAYLOAD)  # the server's Content-Length, never a made-up one
    assert (counted == len(PAYLOAD)) if mode == "flaky" else (0 < counted <= len(PAYLOAD) // 3)
    err = capsys.readouterr().err
    totals = re.findall(r"/(\S+) \[", err)  # each drawn state "n/total [elapsed, rate]"
    assert totals and set(totals) == {"102k"}


def test_cached_file_is_reused_with_the_server_down(tmp_path, server):
    httpd, url = server
    _download(tmp_path, url)
    httpd.shutdown()
    httpd.server_close()
    hits = Handler.hits
    assert _download(tmp_path, url).read_bytes() == PAYLOAD
    assert Handler.hits == hits


def test_damaged_cached_file_is_fetched_again(tmp_path, server, caplog):
    _, url = server
    (tmp_path / "tinymnist.npz").write_bytes(b"half a file")
    assert fetch.verify(["tinymnist"], tmp_path) == {"tinymnist": "bad checksum"}
    assert _download(tmp_path, url).read_bytes() == PAYLOAD
    assert "wrong MD5" in caplog.text


def test_no_network_names_url_file_and_folder(tmp_path, server):
    httpd, url = server
    httpd.shutdown()
    httpd.server_close()
    with pytest.raises(DownloadError) as err:
        _download(tmp_path, url)
    message = str(err.value)
    assert f"{url}/tinymnist.npz" in message and str(tmp_path) in message
    assert "\n" not in message


def test_environment_chooses_root_and_mirror(tmp_path, server, monkeypatch):
    _, url = server
    monkeypatch.setenv(fetch.ENV_ROOT, str(tmp_path / "env-root"))
    monkeypatch.setenv(fetch.ENV_MIRROR, url)
    path = fetch.download("tinymnist", retries=0, progress=False)
    assert path == tmp_path / "env-root" / "tinymnist.npz"


def test_default_url_is_zenodo():
    info = registry.get_info("octmnist")
    assert fetch.source_url(info) == info.url


def test_size_fetches_the_medmnist_plus_file(tmp_path, server):
    _, url = server
    path = _download(tmp_path, url, size=64)
    assert path == tmp_path / "tinymnist_64.npz" and Handler.paths == ["/tinymnist_64.npz"]
    assert fetch.verify(["tinymnist"], tmp_path, size=64) == {"tinymnist_64": "ok"}


def test_http_error_is_named(tmp_path, server):
    _, url = server
    Handler.mode = "missing"
    with pytest.raises(DownloadError, match=r"\(HTTP 404 Not Found\); place tinymnist.npz"):
        _download(tmp_path, url)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mirror", ["ftp://example.org/m", "bogus://x", "sftp://h/m"])
def test_unsupported_mirror_scheme_is_named_not_called_a_checksum_error(tmp_path, server, mirror):
    scheme = mirror.split(":")[0]
    with pytest.raises(MirrorError, match=f"unsupported scheme '{scheme}://', so nothing was"):
        _download(tmp_path, mirror)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []
    assert Handler.hits == 0


def test_mirror_that_is_no_folder_is_named(tmp_path, server, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MirrorError, match="'mirrorfolder' is neither an http.* nor an existing"):
        _download(tmp_path / "cache", "mirrorfolder")
    assert list(tmp_path.iterdir()) == []


def test_local_folder_mirror_is_copied_and_checked(tmp_path, server):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "tinymnist.npz").write_bytes(PAYLOAD)
    path = _download(tmp_path / "a", str(folder))
    assert path.read_bytes() == PAYLOAD and Handler.hits == 0
    assert _download(tmp_path / "b", folder.as_uri()).read_bytes() == PAYLOAD  # file:// URL
    (folder / "tinymnist.npz").write_bytes(PAYLOAD[::-1])
    with pytest.raises(ChecksumError, match=f"the file from {folder}/tinymnist.npz does not"):
        _download(tmp_path / "c", str(folder))
    assert list((tmp_path / "c").iterdir()) == []
    (folder / "tinymnist.npz").unlink()
    with pytest.raises(DownloadError, match=f"the mirror folder {folder} has no tinymnist.npz"):
        _download(tmp_path / "d", str(folder))


def test_ctrl_c_mid_download_leaves_nothing(tmp_path, server, monkeypatch):
    _, url = server

    def interrupted(self, chunk_size=1):
        yield PAYLOAD[:1000]
        raise KeyboardInterrupt

    monkeypatch.setattr(requests.Response, "iter_content", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _download(tmp_path, url)
    assert list(tmp_path.iterdir()) == []


def test_leftovers_of_killed_downloads_are_cleaned_up(tmp_path, server):
    _, url = server
    old = [tmp_path / ".tinymnist.npz.k3j4h5.part", tmp_path / "tmpa1b2c3d4"]
    fresh = tmp_path / ".other.npz.zz9.part"  # another download still writing it
    mine = tmp_path / "tmpnotes.txt"  # not a leftover name
    for path in [*old, fresh, mine]:
        path.write_bytes(b"")
    stale = time.time() - fetch.STALE_SECONDS - 60
    for path in [*old, mine]:
        os.utime(path, (stale, stale))
    _download(tmp_path, url)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh.name, mine.name, "tinymnist.npz"]
    )


def test_unwritable_cache_is_one_line(tmp_path, server):
    _, url = server
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="cannot write into .*file/sub .*choose a writable"):
        _download(tmp_path / "file" / "sub", url)


def test_medmnist_cache_is_reused_after_its_md5_check(tmp_path, server, monkeypatch):
    httpd, url = server
    medmnist = tmp_path / "dot-medmnist"
    medmnist.mkdir()
    monkeypatch.setattr(fetch, "MEDMNIST_ROOT", medmnist)
    (medmnist / "tinymnist.npz").write_bytes(PAYLOAD[::-1])  # not genuine: not used
    assert _download(tmp_path / "cache", url) == tmp_path / "cache" / "tinymnist.npz"
    shutil.rmtree(tmp_path / "cache")
    (medmnist / "tinymnist.npz").write_bytes(PAYLOAD)
    httpd.shutdown()
    hits = Handler.hits
    assert _download(tmp_path / "cache", url) == medmnist / "tinymnist.npz"
    assert Handler.hits == hits
    assert fetch.verify(["tinymnist"], tmp_path / "cache") == {"tinymnist": "ok"}


def test_unreadable_file_is_called_unreadable(tmp_path, server, monkeypatch):
    path = tmp_path / "tinymnist.npz"
    path.write_bytes(PAYLOAD)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fetch, "open", denied, raising=False)  # root ignores chmod
    assert fetch.verify(["tinymnist"], tmp_path) == {"tinymnist": "unreadable"}
    with pytest.raises(UnreadableError, match="cannot be read \\(Permission denied\\); fix"):
        fetch.file_md5(path)


def test_genuine_v2_file_of_a_rereleased_dataset_is_accepted(tmp_path, server, monkeypatch):
    info = registry.SIZED["tinymnist", 28]
    v3 = replace(info, md5="0" * 32, legacy_md5s=(info.md5,))
    monkeypatch.setitem(registry.SIZED, ("tinymnist", 28), v3)
    (tmp_path / "tinymnist.npz").write_bytes(PAYLOAD)
    assert fetch.verify(["tinymnist"], tmp_path) == {"tinymnist": "ok (v2 release)"}
    hits = Handler.hits
    assert _download(tmp_path, "http://127.0.0.1:9") == tmp_path / "tinymnist.npz"
    assert Handler.hits == hits


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no genuine MedMNIST files in {SHARED}")
def test_genuine_shared_files_verify(tmp_path):
    for name in ("breastmnist", "pneumoniamnist"):
        shutil.copy(SHARED / f"{name}.npz", tmp_path)
    result = CliRunner().invoke(cli, ["data", "verify", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["pneumoniamnist", "ok", "breastmnist", "ok"]
