"""Downloads against a local HTTP server (no internet): checksum, resume, restart, hosts, extraction."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import threading
import types
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fixtures_datasets import make_cifar, make_idc, tar_folder

from lfa.data import download
from lfa.data.download import fetch, md5sum, safe_extract
from lfa.errors import ChecksumError, DownloadError, RawDataMissing, UnsafeArchiveError
from lfa.sources import celeba as celeba_source
from lfa.sources import cifar as cifar_source
from lfa.sources import ensure_raw

CIFAR_URL_PATH = "/~kriz/cifar-10-python.tar.gz"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    timeout = 10  # seconds a connection may idle

    def do_GET(self):  # noqa: N802 (http.server's name)
        srv: LocalServer = self.server.owner
        path = urllib.parse.urlsplit(self.path).path
        srv.requests.append((path, self.headers.get("Range")))
        route = srv.routes.get(path)
        if route is None:
            self.send_error(404)
            return
        if "redirect" in route:
            self.send_response(302)
            self.send_header("Location", route["redirect"])
            self.end_headers()
            return
        body: bytes = route["body"]
        start = 0
        rng = self.headers.get("Range")
        if rng and not route.get("ignore_range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", route.get("type", "application/octet-stream"))
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if route.get("truncate", 0) > 0:  # drop the connection half-way, this many times
            route["truncate"] -= 1
            payload = payload[: len(payload) // 2]
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


class LocalServer:
    """An HTTP server on 127.0.0.1 in a thread; routes by URL path; stops itself after 60 s at most."""

    def __init__(self):
        self.routes: dict[str, dict] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        self.httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.guard = threading.Timer(60, self.httpd.shutdown)

    def __enter__(self):
        self.thread.start()
        self.guard.start()
        return self

    def __exit__(self, *exc):
        self.guard.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(monkeypatch):
    with LocalServer() as srv:
        monkeypatch.setattr(download, "_TEST_ORIGIN", srv.origin)
        yield srv


PAYLOAD = bytes(range(256)) * 4000  # ~1 MB, more than one read chunk
URL = "https://www.cs.toronto.edu/~kriz/payload.bin"


def test_fetch_downloads_and_verifies(server, tmp_path):
    server.routes["/~kriz/payload.bin"] = {"body": PAYLOAD}
    out = fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "payload.bin.part").exists()
    # a second call finds the verified file and asks nothing
    fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))
    assert len(server.requests) == 1


def test_checksum_mismatch_deletes_and_a_rerun_downloads_again(server, tmp_path):
    server.routes["/~kriz/payload.bin"] = {"body": PAYLOAD[:-1] + b"x"}
    with pytest.raises(ChecksumError) as err:
        fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))
    assert md5(PAYLOAD) in str(err.value) and md5(PAYLOAD[:-1] + b"x") in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing left behind
    server.routes["/~kriz/payload.bin"] = {"body": PAYLOAD}
    assert fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD)).read_bytes() == PAYLOAD


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    server.routes["/~kriz/payload.bin"] = {"body": PAYLOAD, "truncate": 1}
    with pytest.raises(DownloadError, match="rerun resumes"):
        fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))
    part = tmp_path / "payload.bin.part"
    assert part.stat().st_size == len(PAYLOAD) // 2
    fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/~kriz/payload.bin", f"bytes={len(PAYLOAD) // 2}-")


def test_a_server_without_ranges_restarts_from_zero(server, tmp_path):
    server.routes["/~kriz/payload.bin"] = {"body": PAYLOAD, "ignore_range": True}
    (tmp_path / "payload.bin.part").write_bytes(b"stale bytes of another file")
    fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_a_complete_partial_file_is_verified_after_416(server, tmp_path):
    server.routes["/~kriz/payload.bin"] = {"body": PAYLOAD}
    (tmp_path / "payload.bin.part").write_bytes(PAYLOAD)
    fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))
    assert (tmp_path / "payload.bin").read_bytes() == PAYLOAD


def test_a_stale_final_file_with_a_wrong_hash_is_replaced(server, tmp_path):
    server.routes["/~kriz/payload.bin"] = {"body": PAYLOAD}
    (tmp_path / "payload.bin").write_bytes(b"old")
    assert fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD)).read_bytes() == PAYLOAD


def test_an_html_page_instead_of_the_file_is_an_error(server, tmp_path):
    server.routes["/~kriz/payload.bin"] = {"body": b"<html>quota exceeded</html>", "type": "text/html"}
    with pytest.raises(DownloadError, match="web page"):
        fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))


def test_only_https_on_official_hosts(tmp_path):
    for url in ("http://www.cs.toronto.edu/~kriz/x", "https://example.org/x", "ftp://www.cs.toronto.edu/x",
                "https://www.cs.toronto.edu.example.org/x"):
        with pytest.raises(ValueError, match="refusing"):
            fetch(url, tmp_path / "x", "0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_redirects_to_other_hosts_are_refused(server, tmp_path):
    server.routes["/~kriz/payload.bin"] = {"redirect": "https://example.org/payload.bin"}
    with pytest.raises(DownloadError, match="not an official host"):
        fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD))


def test_unreachable_server_is_a_download_error(monkeypatch, tmp_path):
    monkeypatch.setattr(download, "_TEST_ORIGIN", "http://127.0.0.1:9")  # discard port: connection refused
    with pytest.raises(DownloadError, match="rerun to try again"):
        fetch(URL, tmp_path / "payload.bin", md5(PAYLOAD), timeout=2)


# ------------------------------------------------------------------------------------------- extraction

def _tar_with(tmp_path: Path, *members: tarfile.TarInfo, data: bytes = b"x") -> Path:
    archive = tmp_path / "crafted.tar"
    with tarfile.open(archive, "w") as tar:
        ok = tarfile.TarInfo("good/file.txt")
        ok.size = len(data)
        tar.addfile(ok, io.BytesIO(data))
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return archive


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize("member", [
    _file("../escaped.txt"),
    _file("good/../../escaped.txt"),
    _file("/tmp/absolute.txt"),
    _link("good/up", "../../escaped.txt", tarfile.SYMTYPE),
    _link("good/abs", "/etc/passwd", tarfile.SYMTYPE),
    _link("good/hard", "../escaped.txt", tarfile.LNKTYPE),
    _link("good/dev", "", tarfile.CHRTYPE),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out", "device"])
def test_extraction_refuses_members_outside_the_target(tmp_path, member):
    archive = _tar_with(tmp_path, member)
    target = tmp_path / "deep" / "target"
    target.mkdir(parents=True)
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, target)
    assert list(target.iterdir()) == []  # nothing extracted, staging removed
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "deep" / "escaped.txt").exists()


def test_extraction_keeps_links_inside_and_replaces_earlier_copies(tmp_path):
    archive = _tar_with(tmp_path, _link("good/alias", "file.txt", tarfile.SYMTYPE))
    target = tmp_path / "target"
    (target / "good").mkdir(parents=True)
    (target / "good" / "old.txt").write_text("from an interrupted run")
    (target / ".extract-crafted.tar").mkdir()  # a staging folder left by a killed extraction
    assert safe_extract(archive, target) == 2
    assert (target / "good" / "file.txt").read_bytes() == b"x"
    assert (target / "good" / "alias").resolve() == (target / "good" / "file.txt").resolve()
    assert not (target / "good" / "old.txt").exists()
    assert sorted(p.name for p in target.iterdir()) == ["good"]


def test_zip_traversal_is_refused(tmp_path):
    archive = tmp_path / "crafted.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../escaped.txt", "bad")
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()


def test_a_truncated_archive_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data").write_bytes(bytes(range(256)) * 2000)
    archive = tar_folder(folder, tmp_path / "a.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    target = tmp_path / "target"
    with pytest.raises(DownloadError, match=r"a\.tar\.gz.*(truncated|corrupt)"):
        safe_extract(archive, target)
    assert list(target.iterdir()) == []


# -------------------------------------------------------------------------------- sources end to end

@pytest.fixture
def cifar_archive(tmp_path_factory, monkeypatch):
    """A tiny CIFAR-10 archive in the official layout, and the module's checksums set to match it."""
    work = tmp_path_factory.mktemp("cifar_archive")
    make_cifar(work, train_per_class=3, test_per_class=1)
    folder = work / "cifar-10-batches-py"
    monkeypatch.setattr(cifar_source, "FILE_MD5", {p.name: md5sum(p) for p in folder.iterdir()})
    archive = tar_folder(folder, work / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar_source, "ARCHIVE_MD5", md5sum(archive))
    return archive.read_bytes()


def test_cifar_is_downloaded_verified_and_extracted(server, tmp_path, cifar_archive):
    server.routes[CIFAR_URL_PATH] = {"body": cifar_archive, "truncate": 1}
    root, marker = tmp_path / "raw" / "cifar10", tmp_path / "raw" / "cifar10" / ".verified"
    with pytest.raises(DownloadError, match="rerun resumes"):  # the first connection drops half-way
        ensure_raw("cifar10", root, [{"checksums": True}], marker=marker)
    assert not marker.exists()
    info = ensure_raw("cifar10", root, [{"checksums": True}], marker=marker)
    assert info["downloaded"] and info["checksums_verified"]
    assert json.loads(marker.read_text())["root"] == str(root)
    assert sorted(p.name for p in root.iterdir()) == [".verified", "cifar-10-batches-py"]  # archive removed
    n = len(server.requests)
    ensure_raw("cifar10", root, [{"checksums": True}], marker=marker)  # in place: nothing downloaded
    assert len(server.requests) == n


def test_a_corrupted_cifar_download_is_deleted(server, tmp_path, cifar_archive):
    server.routes[CIFAR_URL_PATH] = {"body": cifar_archive[: len(cifar_archive) // 2]}
    root = tmp_path / "cifar10"
    with pytest.raises(ChecksumError, match="expected md5"):
        ensure_raw("cifar10", root, [{"checksums": True}])
    assert list(root.iterdir()) == []


def test_celeba_falls_back_to_manual_when_the_mirror_refuses(server, tmp_path):
    # Google Drive answering with its quota page instead of the file
    server.routes["/download"] = {"body": b"<html>Quota exceeded</html>", "type": "text/html"}
    root = tmp_path / "celeba"
    with pytest.raises(RawDataMissing) as err:
        ensure_raw("celeba", root, [{"checksums": True}])
    message = str(err.value)
    assert celeba_source.PAGE in message and str(root) in message and "list_eval_partition.txt" in message


# ------------------------------------------------------------------------------------------------ kaggle

@pytest.fixture
def no_kaggle_credentials(monkeypatch, tmp_path):
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))


def _fake_kaggle(monkeypatch, archive_source: Path, calls: list):
    class KaggleApi:
        def authenticate(self):
            calls.append("authenticate")

        def dataset_download_files(self, slug, path, unzip, quiet):
            calls.append((slug, unzip))
            Path(path, "breast-histopathology-images.zip").write_bytes(archive_source.read_bytes())

    ext = types.ModuleType("kaggle.api.kaggle_api_extended")
    ext.KaggleApi = KaggleApi
    monkeypatch.setitem(sys.modules, "kaggle", types.ModuleType("kaggle"))
    monkeypatch.setitem(sys.modules, "kaggle.api", types.ModuleType("kaggle.api"))
    monkeypatch.setitem(sys.modules, "kaggle.api.kaggle_api_extended", ext)


def _idc_zip(tmp_path: Path) -> Path:
    tree = make_idc(tmp_path / "tree", n_neg=4, n_pos=2, duplicate=False)
    archive = tmp_path / "idc.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(tree.rglob("*.png")):
            zf.write(path, path.relative_to(tree).as_posix())
    return archive


def test_idc_without_credentials_says_what_to_do(no_kaggle_credentials, tmp_path):
    root = tmp_path / "idc"
    with pytest.raises(RawDataMissing) as err:
        ensure_raw("idc", root, [{"checksums": False}])
    message = str(err.value)
    assert "paultimothymooney/breast-histopathology-images" in message and "kaggle.json" in message
    assert f"{root}/10253/0/" in message


def test_idc_archive_put_by_hand_is_extracted(no_kaggle_credentials, tmp_path):
    root = tmp_path / "idc"
    root.mkdir()
    _idc_zip(tmp_path).rename(root / "archive.zip")
    info = ensure_raw("idc", root, [{"checksums": False}])
    assert info["counts"] == {"IDC-": 4, "IDC+": 2}
    assert not (root / "archive.zip").exists()


def test_idc_kaggle_download_never_shows_the_credentials(no_kaggle_credentials, monkeypatch, tmp_path, capfd):
    secret_user, secret_key = "user-4711", "k3y-0123456789abcdef"
    monkeypatch.setenv("KAGGLE_USERNAME", secret_user)
    monkeypatch.setenv("KAGGLE_KEY", secret_key)
    calls: list = []
    _fake_kaggle(monkeypatch, _idc_zip(tmp_path), calls)
    root, log = tmp_path / "raw" / "idc", tmp_path / "download.log"
    marker = root / ".verified"
    info = ensure_raw("idc", root, [{"checksums": False}], marker=marker, log=log)
    assert calls == ["authenticate", ("paultimothymooney/breast-histopathology-images", False)]
    assert info["downloaded"] and info["counts"] == {"IDC-": 4, "IDC+": 2}
    out, err = capfd.readouterr()
    for text in (out, err, marker.read_text(), log.read_text()):
        assert secret_key not in text and secret_user not in text
    # a failing client: the error names the dataset but never the key
    class Failing:
        def authenticate(self):
            raise RuntimeError(f"401 Unauthorized for {secret_user}:{secret_key}")

    monkeypatch.setattr(sys.modules["kaggle.api.kaggle_api_extended"], "KaggleApi", Failing)
    with pytest.raises(DownloadError) as failed:
        download.kaggle_download("paultimothymooney/breast-histopathology-images", tmp_path / "again")
    assert secret_key not in str(failed.value) and "401" in str(failed.value)

