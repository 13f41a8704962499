"""Downloadable corpora: the catalogue, the cache, and fetching as a careful user would by hand.

A download goes to a temporary `.NAME.part` file in the cache, is resumed with an HTTP Range
request after a cut connection, retried with back-off on transient errors, bounded in size and
time, verified (a pinned sha256, else the one recorded on first download in `hashes.json`) and
only then renamed into place. An exclusive `fcntl.flock` on `.NAME.lock` makes a second process
fetching the same corpus wait, then find it cached: no torn file either way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import DownloadError
from charrnn.files import atomic_write_bytes, fsync_dir
from charrnn.version import __version__

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

CATALOGUE = Path(__file__).parent / "data" / "catalogue.json"
CATALOGUE_ENV = "CHARRNN_CATALOGUE"  # another catalogue file (tests, private mirrors)
HASHES = "hashes.json"  # trust on first use: sha256 of each unpinned download, by key
MAX_BYTES = 1 << 30  # no corpus download may be larger
TIMEOUT = 30.0  # seconds a connection or a read may stall
RETRIES = 4  # attempts per URL for transient errors
BACKOFF = 1.0  # seconds before the first retry, doubling after each
CHUNK = 1 << 16

# (what, bytes done, bytes in all or None): "downloading NAME", or "retrying NAME ..." after a
# transient error, before the download resumes.
Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True)
class Entry:
    """A downloadable corpus: where it comes from, how to verify it and how to clean it."""

    name: str
    description: str
    urls: tuple[str, ...]
    size: int | None = None  # approximate bytes, for the listing
    licence: str = ""
    sha256: str | None = None  # pinned; None: trust on first use
    clean: str | None = None  # "gutenberg", or None to use the file as downloaded
    key: str = ""  # what hashes.json records it under (the name, or the URL)

    @property
    def file_name(self) -> str:
        return self.name + ".txt"


def catalogue(path: str | os.PathLike | None = None) -> dict[str, Entry]:
    """The downloadable corpora by name: from `path`, else $CHARRNN_CATALOGUE, else the
    package's own catalogue."""
    path = Path(path or os.environ.get(CATALOGUE_ENV) or CATALOGUE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            e["name"]: Entry(
                name=e["name"],
                description=e["description"],
                urls=tuple(e["urls"]),
                size=e.get("size"),
                licence=e.get("licence", ""),
                sha256=e.get("sha256"),
                clean=e.get("clean"),
                key=e["name"],
            )
            for e in data["corpora"]
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DownloadError(f"{path}: not a readable corpus catalogue ({exc})") from None


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def url_entry(url: str) -> Entry:
    """A corpus given by URL: cached under a name made from the URL, verified on first use."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", url.rstrip("/").rsplit("/", 1)[-1])[:40] or "file"
    name = f"url-{hashlib.sha256(url.encode()).hexdigest()[:12]}-{tail.removesuffix('.txt')}"
    return Entry(name=name, description=url, urls=(url,), key=url)


def cache_dir() -> Path:
    """$CHARRNN_CACHE, else $XDG_CACHE_HOME/charrnn, else ~/.cache/charrnn."""
    if os.environ.get("CHARRNN_CACHE"):
        return Path(os.environ["CHARRNN_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "charrnn"
    return Path.home() / ".cache" / "charrnn"


def cached_path(entry: Entry) -> Path:
    """Where the verified download of `entry` lives (or will), as downloaded."""
    return cache_dir() / "corpora" / entry.file_name


def clean_text(entry: Entry, data: bytes) -> str:
    """The text of a download after its cleaning rule: a Project Gutenberg text loses its
    licence header and footer (everything outside the `*** START` and `*** END` lines)."""
    text = data.decode("utf-8-sig").replace("\r\n", "\n")
    if entry.clean == "gutenberg":
        start = re.search(r"^\*\*\* ?START OF .*$", text, re.MULTILINE)
        end = re.search(r"^\*\*\* ?END OF .*$", text, re.MULTILINE)
        if not start or not end or end.start() < start.end():
            raise DownloadError(
                f"{entry.name}: no *** START / *** END lines of a Project Gutenberg text"
            )
        text = text[start.end() : end.start()].strip("\n") + "\n"
    elif entry.clean is not None:
        raise DownloadError(f"{entry.name}: unknown cleaning rule {entry.clean!r}")
    return text


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (made if absent), waiting for another holder."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise DownloadError(f"cannot use the cache {path.parent} ({exc.strerror or exc})") from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _recorded_hashes(cache: Path) -> dict:
    try:
        return json.loads((cache / HASHES).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _verify(entry: Entry, part: Path, cache: Path) -> None:
    """Check the download against its pinned hash, or the one recorded on first use (which it
    becomes if there is none); a mismatch discards the file."""
    digest = hashlib.sha256()
    with part.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    got = digest.hexdigest()
    with _locked(cache / ".hashes.lock"):
        hashes = _recorded_hashes(cache)
        want = entry.sha256 or hashes.get(entry.key)
        if want is None:
            hashes[entry.key] = got
            atomic_write_bytes(cache / HASHES, (json.dumps(hashes, indent=2) + "\n").encode())
            return
    if got != want:
        part.unlink(missing_ok=True)
        where = "pinned in the catalogue" if entry.sha256 else f"recorded in {cache / HASHES}"
        raise DownloadError(
            f"{entry.urls[0]}: sha256 mismatch (got {got[:16]}..., expected {want[:16]}... "
            f"{where}); the file was discarded"
        )


class _Transient(Exception):
    """A failure worth retrying after a pause: a cut connection, a timeout, a 5xx."""


class _UrlFailed(Exception):
    """This URL will not do (unreachable host, 4xx): try the mirror, without retrying."""


def _disk_error(path: Path, exc: OSError) -> DownloadError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DownloadError(f"{path}: disk full while downloading; free space and fetch again")
    return DownloadError(f"cannot write {path} ({exc.strerror or exc})")


def _request(url: str, part: Path, offset: int, timeout: float):
    """The server's response to a GET from `offset` on; _Transient for what a retry may
    cure, _UrlFailed for what it cannot."""
    headers = {"User-Agent": f"charrnn/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the part file is already whole, or stale
            part.unlink()
            raise _Transient("the server refused to resume; starting again") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise _UrlFailed(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _Transient(f"no answer within {timeout:g} s") from None
        if isinstance(exc.reason, (ConnectionResetError, ConnectionAbortedError)):
            raise _Transient(str(exc.reason)) from None
        raise _UrlFailed(f"cannot reach {url} ({exc.reason})") from None
    except TimeoutError:
        raise _Transient(f"no answer within {timeout:g} s") from None
    except (ConnectionError, http.client.HTTPException) as exc:
        raise _Transient(f"connection failed ({exc})") from None


def _attempt(
    url: str, part: Path, entry: Entry, progress: Progress, timeout: float, max_bytes: int
) -> None:
    """One request, appending to `part` from its current size (a Range request) or rewriting
    it (a server that ignores Range). Raises _Transient for what a retry may cure."""
    offset = part.stat().st_size if part.exists() else 0
    response = _request(url, part, offset, timeout)
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        mode = "ab"
        if offset and response.status == 206:
            match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink()
                raise _Transient("the server resumed at the wrong place; starting again")
        else:  # 200: the whole file, whatever Range asked
            mode, offset = "wb", 0
        total = offset + length if length is not None else None
        if total is not None and total > max_bytes:
            raise DownloadError(
                f"{url}: {total:,} bytes, over the limit of {max_bytes:,} bytes for a corpus"
            )
        what = f"downloading {entry.name}"
        done = offset
        progress(what, done, total)
        try:
            f = part.open(mode)
        except OSError as exc:
            raise _disk_error(part, exc) from None
        with f:
            while True:
                try:
                    block = response.read(CHUNK)
                except TimeoutError:
                    raise _Transient(f"stalled for {timeout:g} s at {done:,} bytes") from None
                except (ConnectionError, http.client.HTTPException) as exc:
                    raise _Transient(f"connection cut at {done:,} bytes ({exc})") from None
                if not block:
                    break
                done += len(block)
                if done > max_bytes:
                    f.close()
                    part.unlink()
                    raise DownloadError(
                        f"{url}: more than the limit of {max_bytes:,} bytes for a corpus"
                    )
                try:
                    f.write(block)
                except OSError as exc:
                    f.close()
                    part.unlink(missing_ok=True)
                    raise _disk_error(part, exc) from None
                progress(what, done, total)
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                raise _disk_error(part, exc) from None
        if total is not None and done < total:
            raise _Transient(f"connection cut at {done:,} of {total:,} bytes")


def fetch(
    entry: Entry,
    progress: Progress | None = None,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    backoff: float = BACKOFF,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """The cached, verified file of `entry`, downloading it first unless it is cached."""
    progress = progress or (lambda what, done, total: None)
    cache = cache_dir()
    dest = cached_path(entry)
    if dest.is_file():
        return dest
    part = dest.parent / f".{entry.file_name}.part"
    with _locked(dest.parent / f".{entry.file_name}.lock"):
        if dest.is_file():  # another process fetched it while this one waited for the lock
            return dest
        failures = []
        for url in entry.urls:
            for attempt in range(1, retries + 1):
                try:
                    _attempt(url, part, entry, progress, timeout, max_bytes)
                except _Transient as exc:
                    failures.append(f"{url}: {exc}")
                    if attempt < retries:
                        progress(f"retrying {entry.name} ({exc})", 0, None)
                        time.sleep(backoff * 2 ** (attempt - 1))
                    continue
                except _UrlFailed as exc:
                    failures.append(str(exc))
                    break
                _verify(entry, part, cache)
                try:
                    os.replace(part, dest)
                    fsync_dir(dest.parent)
                except OSError as exc:
                    raise _disk_error(dest, exc) from None
                return dest
    raise DownloadError(
        f"{failures[-1]} ({len(failures)} attempt(s) in all); to add it by hand, download "
        f"{entry.urls[0]} and save it as {dest}"
    )
