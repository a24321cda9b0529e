"""The download path over real HTTP, against a server on 127.0.0.1 that each test starts."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from medclf.data import fetch, registry
from medclf.errors import ChecksumError, DownloadError

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


class Handler(BaseHTTPRequestHandler):
    mode = "ok"  # "ok", "corrupt" or "cut" (server gone mid-file)
    hits = 0

    def do_GET(self):
        type(self).hits += 1
        body = PAYLOAD if self.mode != "corrupt" else PAYLOAD[::-1]
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.mode == "cut":
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.close()  # the rest never arrives
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """Serve PAYLOAD as tinymnist.npz; register a dataset whose MD5 is PAYLOAD's."""
    Handler.mode, Handler.hits = "ok", 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    info = replace(
        registry.REGISTRY["octmnist"], name="tinymnist", md5=hashlib.md5(PAYLOAD).hexdigest()
    )
    monkeypatch.setitem(registry.REGISTRY, "tinymnist", info)
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
