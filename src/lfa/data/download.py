"""Downloads of raw datasets: official HTTPS hosts only, checksum before use, resumable, safe extraction.

- :func:`fetch` downloads one file over HTTPS from a host of :data:`OFFICIAL_HOSTS` into ``<dest>.part``,
  resuming an earlier partial download with an HTTP Range request where the server allows it (and
  restarting from zero where it does not), shows a byte progress bar, and renames the file into place
  only after its MD5 matched the known value. A mismatch deletes the download and raises
  :class:`ChecksumError` with the expected and actual hashes, so a rerun downloads it again.
- :func:`safe_extract` unpacks a tar or zip archive into a staging folder beside the target, refusing any
  member that would land outside it (absolute paths, ``..``, links pointing out, devices), then moves the
  result into place; a truncated or corrupt archive raises :class:`DownloadError` naming it.
- :func:`kaggle_download` uses the optional ``kaggle`` package (imported only when needed) with the
  credentials it finds in its standard places; this module only checks that they exist and never reads,
  logs or writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from lfa.errors import ChecksumError, DownloadError, UnsafeArchiveError
from lfa.io import atomic_path

#: Hosts the pipeline downloads from (HTTPS only): CIFAR-10's home, Google Drive (CelebA's official
#: mirror) and GitHub (a class-count CSV given by URL).
OFFICIAL_HOSTS = frozenset({
    "www.cs.toronto.edu",
    "drive.google.com",
    "drive.usercontent.google.com",
    "github.com",
    "raw.githubusercontent.com",
})
#: Google Drive may redirect to its content servers.
OFFICIAL_HOST_SUFFIXES = (".googleusercontent.com",)

#: Tests only: "http://127.0.0.1:<port>" replaces the scheme and host of official URLs (after they were
#: checked), so download logic can be exercised against a local server. Never set outside the tests.
_TEST_ORIGIN: str | None = None

USER_AGENT = "lfa-repro/0.1 (dataset download)"
CHUNK = 1 << 20


def md5sum(path: str | Path, chunk: int = CHUNK) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_url(text: str) -> bool:
    return "://" in str(text)


def check_url(url: str) -> None:
    """Raise ValueError unless ``url`` is HTTPS on an official host."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        raise ValueError(f"refusing to download {url}: only https:// URLs are allowed")
    if host not in OFFICIAL_HOSTS and not host.endswith(OFFICIAL_HOST_SUFFIXES):
        raise ValueError(f"refusing to download {url}: {host!r} is not an official host "
                         f"({', '.join(sorted(OFFICIAL_HOSTS))})")


def _effective_url(url: str) -> str:
    check_url(url)
    if _TEST_ORIGIN is None:
        return url
    parts = urllib.parse.urlsplit(url)
    origin = urllib.parse.urlsplit(_TEST_ORIGIN)
    return urllib.parse.urlunsplit((origin.scheme, origin.netloc, parts.path, parts.query, ""))


class _OfficialRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to official HTTPS hosts."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: N802 (urllib's name)
        if _TEST_ORIGIN is not None and newurl.startswith(_TEST_ORIGIN):
            pass
        else:
            try:
                check_url(newurl)
            except ValueError as err:
                raise DownloadError(f"{req.full_url} redirects to {newurl}: {err}") from None
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and req.has_header("Range"):
            new.add_header("Range", req.get_header("Range"))
        return new


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    opener = urllib.request.build_opener(_OfficialRedirects)
    return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)


def _progress(total: int | None, initial: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                file=sys.stderr, mininterval=1.0, disable=None)


def _write_body(resp: Any, part: Path, offset: int, url: str, desc: str) -> None:
    """Append (from ``offset``) or write the answer's body to ``part``; a short body is an error, and kept."""
    length = resp.headers.get("Content-Length")
    total = offset + int(length) if length is not None else None
    with open(part, "ab" if offset else "wb") as fh, _progress(total, offset, desc) as bar:
        while True:
            try:
                block = resp.read(CHUNK)
            except (OSError, ValueError) as err:  # IncompleteRead, reset connection, timeout
                raise DownloadError(f"{url}: interrupted after {fh.tell()} bytes ({err}); "
                                    f"the partial file {part} is kept and a rerun resumes it") from None
            if not block:
                break
            fh.write(block)
            bar.update(len(block))
        size = fh.tell()
    if total is not None and size < total:
        raise DownloadError(f"{url}: connection closed after {size} of {total} bytes; "
                            f"the partial file {part} is kept and a rerun resumes it")


def fetch(url: str, dest: str | Path, md5: str, *, desc: str | None = None, timeout: float = 60.0,
          html_ok: bool = False) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right MD5 is already there; returns ``dest``.

    The bytes go to ``<dest>.part``; an interrupted download keeps it and the next call resumes with an
    HTTP Range request (or restarts when the server ignores ranges). ``html_ok=False``: an HTML answer
    (e.g. a quota or sign-in page instead of the file) is an error.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    desc = desc or dest.name
    if dest.exists():
        actual = md5sum(dest)
        if actual == md5:
            return dest
        print(f"{dest}: md5 {actual}, expected {md5}; downloading it again", file=sys.stderr)
        dest.unlink()
    real_url = _effective_url(url)

    for _attempt in range(3):
        offset = part.stat().st_size if part.exists() else 0
        try:
            resp = _open(real_url, offset, timeout)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:  # nothing left to send: the partial file may be complete
                break
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}; rerun to try again") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise DownloadError(f"{url}: {reason}; rerun to try again"
                                + (f" (the partial file {part} is kept and resumed)" if offset else "")) from None
        with resp:
            ctype = resp.headers.get("Content-Type", "")
            if not html_ok and ctype.startswith("text/html"):
                raise DownloadError(f"{url}: the server answered with a web page instead of the file "
                                    "(a quota, sign-in or error page); rerun later or download it by hand")
            status = resp.status
            if offset and status == 206:
                match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != offset:
                    part.unlink()  # an answer we cannot append to: start again
                    continue
            else:
                offset = 0  # no partial file, or the server ignored the range: start from zero
            _write_body(resp, part, offset, url, desc)
        break
    else:
        raise DownloadError(f"{url}: the server's answers to range requests do not fit; rerun to try again")

    actual = md5sum(part)
    if actual != md5:
        part.unlink()
        raise ChecksumError(f"{url}: checksum mismatch: expected md5 {md5}, got {actual}; "
                            "the download was deleted, rerun to download it again")
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------------------------- archives

def _member_path(name: str, staging: Path) -> Path:
    """The extraction path of an archive member, or UnsafeArchiveError if it leaves ``staging``."""
    clean = name.replace("\\", "/")
    if not clean or clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    if ".." in PurePosixPath(clean).parts:
        raise UnsafeArchiveError(f"archive member {name!r} points outside the extraction folder")
    path = (staging / clean).resolve()
    if not path.is_relative_to(staging.resolve()):
        raise UnsafeArchiveError(f"archive member {name!r} points outside the extraction folder")
    return path


def _check_tar_member(member: tarfile.TarInfo, staging: Path) -> None:
    path = _member_path(member.name, staging)
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
            raise UnsafeArchiveError(f"archive link {member.name!r} -> {member.linkname!r} is absolute")
        # A symbolic link is relative to its own folder, a hard link to the archive's root.
        base = path.parent if member.issym() else staging.resolve()
        target = Path(os.path.normpath(base / link))
        if not target.is_relative_to(staging.resolve()):
            raise UnsafeArchiveError(f"archive link {member.name!r} -> {member.linkname!r} points outside")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"archive member {member.name!r} is a device or pipe")


def _extract_tar(archive: Path, staging: Path) -> int:
    from tqdm import tqdm

    n = 0
    has_filter = hasattr(tarfile, "data_filter")
    with tarfile.open(archive, "r:*") as tar, tqdm(desc=f"extract {archive.name}", unit=" files",
                                                    file=sys.stderr, mininterval=1.0, disable=None) as bar:
        for member in tar:
            _check_tar_member(member, staging)
            if not has_filter and (member.issym() or member.islnk()):
                raise UnsafeArchiveError(f"archive member {member.name!r} is a link (unsupported here)")
            if has_filter:
                tar.extract(member, staging, filter="data")
            else:
                tar.extract(member, staging)
            n += 1
            bar.update()
    return n


def _extract_zip(archive: Path, staging: Path) -> int:
    from tqdm import tqdm

    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _member_path(info.filename, staging)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchiveError(f"archive member {info.filename!r} is a link")
        for info in tqdm(infos, desc=f"extract {archive.name}", unit=" files", file=sys.stderr,
                         mininterval=1.0, disable=None):
            zf.extract(info, staging)  # reads through the member's CRC-32: a corrupt member raises
    return len(infos)


def safe_extract(archive: str | Path, target: str | Path) -> int:
    """Extract a tar (any compression) or zip archive into ``target``; returns the number of members.

    Members are first extracted into ``target/.extract-<archive>/`` (removed again on any error, and
    cleared before a new attempt) and moved into ``target`` when all were read, replacing earlier copies.
    """
    archive, target = Path(archive), Path(target)
    staging = target / f".extract-{archive.name}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            n = _extract_zip(archive, staging)
        else:
            try:
                n = _extract_tar(archive, staging)
            except tarfile.ReadError as err:
                raise DownloadError(f"{archive}: not a readable tar or zip archive, or truncated ({err})") from None
    except UnsafeArchiveError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise UnsafeArchiveError(f"{archive}: {err}; nothing was extracted") from None
    except DownloadError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"{archive}: truncated or corrupt archive ({type(err).__name__}: {err}); "
                            "delete it and rerun to download it again") from None
    for entry in sorted(staging.iterdir()):
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        os.replace(entry, dest)
    staging.rmdir()
    return n


# ----------------------------------------------------------------------------------------------- kaggle

def kaggle_credentials_present() -> bool:
    """Whether the Kaggle client will find credentials (environment or kaggle.json); nothing is read."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    places = []
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        places.append(Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json")
    places.append(Path.home() / ".kaggle" / "kaggle.json")
    places.append(Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle" / "kaggle.json")
    return any(p.is_file() for p in places)


def _redacted(err: BaseException) -> str:
    text = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    for var in ("KAGGLE_KEY", "KAGGLE_USERNAME"):
        value = os.environ.get(var)
        if value:
            text = text.replace(value, "***")
    return text


def kaggle_download(slug: str, dest_dir: str | Path) -> Path:
    """Download a Kaggle dataset's archive with the ``kaggle`` package into ``dest_dir``; returns the zip."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise DownloadError("Kaggle credentials were found but the kaggle package is not installed "
                            "(pip install kaggle)") from None
    try:
        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(slug, path=str(dest_dir), unzip=False, quiet=False)
    except Exception as err:  # the client's own exception types vary between versions
        raise DownloadError(f"Kaggle download of {slug} failed: {_redacted(err)}") from None
    zips = sorted(dest_dir.glob("*.zip"), key=lambda p: p.stat().st_mtime)
    expected = dest_dir / f"{slug.rsplit('/', 1)[-1]}.zip"
    if expected.exists():
        return expected
    if zips:
        return zips[-1]
    raise DownloadError(f"Kaggle download of {slug} left no zip archive in {dest_dir}")


# ----------------------------------------------------------------------------------------------- marker

def write_marker(path: str | Path, info: dict[str, Any]) -> Path:
    """Write the JSON marker a prepare rule depends on, after the raw data passed its check."""
    path = Path(path)
    info = {**info, "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return path

