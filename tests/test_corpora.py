"""Corpora: the built-in ones, and downloads from a real HTTP server on the loopback interface
(success, bad hash, 404, a cut connection resumed, Range ignored, redirects, a stalled server,
wrong lengths, a size limit, a full disk, two fetches at once, and the CLI around them)."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_usage_error, cli_env, run_cli

from charrnn import TrainConfig, download, train
from charrnn.corpus import (
    FILE_SEPARATOR,
    SHAKESPEARE_SHA256,
    builtin_corpus,
    encode_file,
    load_corpus,
    python_source,
    walk,
)
from charrnn.errors import CorpusError, DownloadError

BODY = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(2000))
DATA = BODY.encode()  # about 110 KB
SHA = hashlib.sha256(DATA).hexdigest()
GUTENBERG = (
    "\ufeffThe Project Gutenberg eBook of a test\r\nlicence words\r\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n\r\n"
    + BODY.replace("\n", "\r\n")
    + "\r\n*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\nmore licence words\r\n"
).encode()
SLOW = 1.0  # seconds the slow route waits before answering; tests use a shorter timeout


class Handler(BaseHTTPRequestHandler):
    """One route per scenario; every request is logged as (path, Range header) on the server."""

    def log_message(self, *args) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the client gave up (a timeout test)
            super().handle()

    def send_body(self, data: bytes, honour_range: bool = True, length: int | None = None) -> None:
        start = 0
        asked = self.headers.get("Range")
        if asked and honour_range:
            start = int(asked.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start if length is None else length))
        self.end_headers()
        self.wfile.write(data[start:])

    def cut(self, data: bytes) -> None:
        """Declare the whole file, send half of it, drop the connection."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        server = self.server
        with server.guard:
            server.requests.append((self.path, self.headers.get("Range")))
            server.times.append(time.monotonic())
            seen = sum(path == self.path for path, _ in server.requests)
            first = seen == 1
        route = self.path
        if route == "/ok.txt":
            self.send_body(DATA)
        elif route in ("/500.txt", "/503.txt", "/429.txt"):
            self.send_error(int(route[1:4]))
        elif route == "/flaky.txt":  # two server errors, then the file
            self.send_error(502) if seen <= 2 else self.send_body(DATA)
        elif route == "/huge.txt":  # declares one byte more than 1 GiB, sends nothing
            self.send_response(200)
            self.send_header("Content-Length", str((1 << 30) + 1))
            self.end_headers()
        elif route == "/gutenberg.txt":
            self.send_body(GUTENBERG)
        elif route == "/cut.txt":
            self.cut(DATA) if first else self.send_body(DATA)
        elif route == "/norange.txt":
            self.cut(DATA) if first else self.send_body(DATA, honour_range=False)
        elif route in ("/moved", "/found"):
            self.send_response(301 if route == "/moved" else 302)
            self.send_header("Location", "/ok.txt")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "/slow.txt":
            time.sleep(SLOW)
            self.send_body(DATA)
        elif route == "/longer.txt":  # declares fewer bytes than it sends
            self.send_body(DATA + b"trailing bytes", length=len(DATA))
        elif route == "/shorter.txt":  # declares more bytes than it ever sends
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA) + 100))
            self.end_headers()
            self.wfile.write(DATA)
        elif route == "/unbounded.txt":  # no Content-Length: ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(DATA)
        elif route == "/trickle.txt":  # slow enough for two fetches to overlap
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            for i in range(0, len(DATA), len(DATA) // 5):
                self.wfile.write(DATA[i : i + len(DATA) // 5])
                self.wfile.flush()
                time.sleep(0.05)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    """A ThreadingHTTPServer on 127.0.0.1 (a free port), stopped after the module's tests."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.requests, httpd.times, httpd.guard = [], [], threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def base(server) -> str:
    server.requests.clear()
    server.times.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """CHARRNN_CACHE in the test's own directory: no test sees another's downloads."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entry(base: str, path: str, sha256: str | None = None, **kw) -> download.Entry:
    name = path.strip("/").removesuffix(".txt")
    return download.Entry(name, "test", (base + path,), sha256=sha256, key=name, **kw)


def fetch(e: download.Entry, **kw) -> Path:
    return download.fetch(e, **{"timeout": 5, "retries": 3, "backoff": 0.01, **kw})


def no_leftovers(cache: Path) -> bool:
    """Nothing half-written in the cache: no .part file."""
    return not list(cache.rglob("*.part"))


# ---- downloads ----------------------------------------------------------------------------


def test_download_verified_cached_and_reported(base, server, cache):
    """A pinned download lands in the cache whole; the second fetch makes no request."""
    seen = []
    path = fetch(entry(base, "/ok.txt", SHA), progress=lambda *a: seen.append(a))
    assert path == cache / "corpora" / "ok.txt" and path.read_bytes() == DATA
    assert seen[-1] == ("downloading ok", len(DATA), len(DATA))
    assert fetch(entry(base, "/ok.txt", SHA)) == path
    assert len(server.requests) == 1 and no_leftovers(cache)


def test_trust_on_first_use(base, server, cache):
    """An unpinned download records its sha256; a later download that differs is refused."""
    fetch(entry(base, "/ok.txt"))
    assert json.loads((cache / "hashes.json").read_text())["ok"] == SHA
    (cache / "corpora" / "ok.txt").unlink()
    other = download.Entry("ok", "test", (base + "/gutenberg.txt",), key="ok")
    with pytest.raises(DownloadError, match=r"sha256 mismatch.*recorded.*discarded"):
        fetch(other)
    assert not (cache / "corpora" / "ok.txt").exists() and no_leftovers(cache)


def test_checksum_mismatch_discards_the_file(base, cache):
    with pytest.raises(DownloadError, match=r"sha256 mismatch.*pinned.*discarded"):
        fetch(entry(base, "/ok.txt", "0" * 64))
    assert not (cache / "corpora" / "ok.txt").exists() and no_leftovers(cache)


def test_404_is_an_http_error(base, server):
    """A 4xx is not transient: one request, no retry."""
    with pytest.raises(
        DownloadError, match=r"HTTP 404.*\(1 attempt\(s\) in all\).*save it as .*missing\.txt"
    ):
        fetch(entry(base, "/missing.txt"))
    assert len(server.requests) == 1


@pytest.mark.parametrize("route", ["/500.txt", "/503.txt", "/429.txt"])
def test_server_errors_and_429_are_retried(base, server, route):
    """HTTP 5xx and 429 are transient: every attempt is made, then one error naming the last."""
    code = route[1:4]
    with pytest.raises(DownloadError, match=rf"HTTP {code} .*\(3 attempt\(s\) in all\)"):
        fetch(entry(base, route))
    assert server.requests == [(route, None)] * 3


def test_a_server_error_that_passes_is_retried_to_the_file(base, server):
    assert fetch(entry(base, "/flaky.txt", SHA)).read_bytes() == DATA
    assert len(server.requests) == 3


def test_download_defaults_are_the_readmes(base, server):
    """The README's numbers are the defaults `fetch` (and so the CLI) uses: 4 attempts with
    back-off 1, 2, 4 s, a 1 GiB cap, a 30 s stall timeout. The attempts and the 1 GiB cap are
    met on the server with the defaults; the back-off doubles (measured with a short first
    pause), from a first pause of 1 s."""
    readme = " ".join((Path(__file__).parents[1] / "docs" / "cli.md").read_text().split())
    assert "are retried 4 times with back-off (1, 2, 4 s)" in readme
    assert "may not exceed 1 GiB" in readme and "stalls for 30 s counts as a failure" in readme
    defaults = {name: p.default for name, p in inspect.signature(download.fetch).parameters.items()}
    assert defaults["retries"] == download.RETRIES == 4
    assert defaults["timeout"] == download.TIMEOUT == 30
    assert defaults["max_bytes"] == download.MAX_BYTES == 1 << 30
    assert defaults["backoff"] == download.BACKOFF
    first = 0.1
    with pytest.raises(DownloadError, match=r"HTTP 503 .*\(4 attempt\(s\) in all\)"):
        download.fetch(entry(base, "/503.txt"), backoff=first)
    assert len(server.requests) == download.RETRIES
    pauses = np.diff(server.times)  # (3,)
    planned = first * 2.0 ** np.arange(3)  # 0.1, 0.2, 0.4 s
    assert (pauses >= planned).all() and (pauses < 1.5 * planned + 0.25).all(), pauses
    assert [download.BACKOFF * 2**k for k in range(download.RETRIES - 1)] == [1, 2, 4]
    server.requests.clear()
    with pytest.raises(DownloadError, match=r"over the limit of 1,073,741,824 bytes"):
        download.fetch(entry(base, "/huge.txt"))
    assert len(server.requests) == 1


def test_mirror_after_404(base, server):
    """A URL that is gone falls through to the mirror."""
    e = download.Entry("ok", "test", (base + "/gone.txt", base + "/ok.txt"), sha256=SHA, key="ok")
    assert fetch(e).read_bytes() == DATA
    assert [p for p, _ in server.requests] == ["/gone.txt", "/ok.txt"]


def test_cut_connection_resumes_with_range(base, server):
    """Half the file, then the connection drops: the retry asks for the rest only."""
    assert fetch(entry(base, "/cut.txt", SHA)).read_bytes() == DATA
    assert server.requests == [("/cut.txt", None), ("/cut.txt", f"bytes={len(DATA) // 2}-")]


def test_server_ignoring_range_restarts_cleanly(base, server):
    """A 200 answer to a Range request is the whole file: it replaces the part, not appends."""
    assert fetch(entry(base, "/norange.txt", SHA)).read_bytes() == DATA
    assert server.requests[1] == ("/norange.txt", f"bytes={len(DATA) // 2}-")


def test_part_file_from_a_killed_process_is_resumed(base, server, cache):
    (cache / "corpora").mkdir(parents=True)
    (cache / "corpora" / ".ok.txt.part").write_bytes(DATA[:1000])
    assert fetch(entry(base, "/ok.txt", SHA)).read_bytes() == DATA
    assert server.requests == [("/ok.txt", "bytes=1000-")]


@pytest.mark.parametrize("route", ["/moved", "/found"])
def test_redirect_is_followed(base, server, route):
    assert fetch(entry(base, route, SHA)).read_bytes() == DATA
    assert [p for p, _ in server.requests] == [route, "/ok.txt"]


def test_slow_server_times_out_and_retries(base, server):
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"no answer within 0\.2 s.*2 attempt"):
        fetch(entry(base, "/slow.txt"), timeout=0.2, retries=2)
    assert time.monotonic() - t0 < 2 * SLOW + 1
    assert len(server.requests) == 2


def test_more_bytes_than_declared(base):
    """Only the declared bytes are read; what they are fails the pinned hash."""
    fetch(entry(base, "/longer.txt", SHA)).unlink()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(entry(base, "/longer.txt", hashlib.sha256(DATA + b"trailing bytes").hexdigest()))


def test_fewer_bytes_than_declared(base, server, cache):
    """A server that always stops short is a cut connection each time: retried, then an error."""
    with pytest.raises(DownloadError, match=r"shorter\.txt: connection cut"):
        fetch(entry(base, "/shorter.txt"), retries=2)
    assert len(server.requests) == 2
    assert not (cache / "corpora" / "shorter.txt").exists()


def test_size_limit(base, cache):
    with pytest.raises(DownloadError, match="over the limit of 1,000 bytes"):
        fetch(entry(base, "/ok.txt"), max_bytes=1000)
    with pytest.raises(DownloadError, match="more than the limit of 1,000 bytes"):
        fetch(entry(base, "/unbounded.txt"), max_bytes=1000)
    assert no_leftovers(cache)


def test_unbounded_body_is_read_to_the_end(base):
    assert fetch(entry(base, "/unbounded.txt", SHA)).read_bytes() == DATA


def test_connection_refused_names_url_and_where_to_put_the_file(cache):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    with pytest.raises(DownloadError, match=rf"cannot reach .*:{port}/x.txt.*save it as .*x\.txt"):
        fetch(entry(f"http://127.0.0.1:{port}", "/x.txt"))


def test_dns_failure(monkeypatch):
    """No name resolves (getaddrinfo fails as it does offline): one clear error, no retries
    (one look-up, no back-off pause of the default 1 s)."""
    lookups = []

    def offline(*args, **kwargs):
        lookups.append(args[0])
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    t0 = time.monotonic()
    with pytest.raises(
        DownloadError,
        match=r"cannot reach http://corpora\.invalid/x\.txt.*\(1 attempt\(s\) in all\)",
    ):
        download.fetch(entry("http://corpora.invalid", "/x.txt"))
    assert lookups == ["corpora.invalid"] and time.monotonic() - t0 < download.BACKOFF


def test_full_disk(base, cache):
    """Writes fail with ENOSPC (the part file is /dev/full): a one-line error, nothing kept."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    (cache / "corpora").mkdir(parents=True)
    (cache / "corpora" / ".ok.txt.part").symlink_to("/dev/full")
    with pytest.raises(DownloadError, match="disk full"):
        fetch(entry(base, "/ok.txt", SHA))
    assert not (cache / "corpora" / "ok.txt").exists()
    assert not (cache / "corpora" / ".ok.txt.part").is_symlink()


def test_two_concurrent_fetches_download_once(base, server, cache):
    """The second fetch waits on the lock and finds the file cached: one download, whole."""
    results, errors = [], []

    def run() -> None:
        try:
            results.append(fetch(entry(base, "/trickle.txt", SHA)))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert results[0].read_bytes() == DATA and no_leftovers(cache)
    assert len(server.requests) == 1


def test_gutenberg_cleaning():
    e = download.Entry("g", "test", ("http://127.0.0.1/",), clean="gutenberg")
    assert download.clean_text(e, GUTENBERG) == BODY
    with pytest.raises(DownloadError, match="START"):
        download.clean_text(e, DATA)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("CHARRNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.cache_dir() == tmp_path / "xdg" / "charrnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.cache_dir() == tmp_path / "home" / ".cache" / "charrnn"


def test_package_catalogue():
    """The shipped catalogue has the promised classics, each with a licence, URLs over https
    and a cleaning rule for Gutenberg texts."""
    entries = download.catalogue(download.CATALOGUE)
    assert {"war-and-peace", "shakespeare-complete"} <= entries.keys() and len(entries) >= 5
    assert "2600" in entries["war-and-peace"].urls[0]
    assert "/100/" in entries["shakespeare-complete"].urls[0]
    for e in entries.values():
        assert e.licence and e.size and all(u.startswith("https://") for u in e.urls)
        assert e.clean == ("gutenberg" if "gutenberg.org" in e.urls[0] else None)
        assert e.sha256 is None or len(e.sha256) == 64


# ---- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def catalogue(base, tmp_path, monkeypatch) -> Path:
    """A test catalogue ($CHARRNN_CATALOGUE) whose every URL is on the loopback server."""
    corpora = [
        {"name": "book", "description": "a test book", "size": len(GUTENBERG),
         "licence": "test", "urls": [base + "/gutenberg.txt"], "sha256": None,
         "clean": "gutenberg"},
        {"name": "wrong", "description": "bad hash", "urls": [base + "/ok.txt"],
         "sha256": "0" * 64},
        {"name": "gone", "description": "404", "urls": [base + "/missing.txt"]},
        {"name": "slow", "description": "trickles", "urls": [base + "/trickle.txt"]},
    ]  # fmt: skip
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps({"version": 1, "corpora": corpora}))
    monkeypatch.setenv("CHARRNN_CATALOGUE", str(path))
    return path


def test_cli_lists_fetches_and_marks_cached(catalogue, cache):
    listing = run_cli("corpora")
    assert listing.returncode == 0, listing.stderr
    assert "shakespeare" in listing.stdout and "python-source" in listing.stdout
    row = next(line for line in listing.stdout.splitlines() if "│ book" in line)
    assert "│ no " in row and "on first use" in row

    fetched = run_cli("corpora", "fetch", "book")
    assert fetched.returncode == 0, fetched.stderr
    assert (cache / "corpora" / "book.txt").read_bytes() == GUTENBERG
    assert "downloading book" in fetched.stdout

    row = next(line for line in run_cli("corpora").stdout.splitlines() if "│ book" in line)
    assert "│ yes " in row


def test_two_processes_fetching_at_once_download_once(catalogue, cache, server):
    """Two `charrnn corpora fetch` processes started together: both succeed, the server sees
    one download (the second process waits on the lock, then finds the file cached), and the
    cache holds the whole file with no part file left."""
    command = [sys.executable, "-m", "charrnn", "corpora", "fetch", "slow"]
    env = {**cli_env(), "CHARRNN_CATALOGUE": str(catalogue), "CHARRNN_CACHE": str(cache)}
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "env": env}
    with subprocess.Popen(command, **pipes) as a, subprocess.Popen(command, **pipes) as b:
        outcomes = [(p.communicate(timeout=60)[1], p.returncode) for p in (a, b)]
    outcomes = [(code, err) for err, code in outcomes]
    assert outcomes == [(0, b""), (0, b"")], outcomes
    assert (cache / "corpora" / "slow.txt").read_bytes() == DATA and no_leftovers(cache)
    assert [path for path, _ in server.requests] == ["/trickle.txt"]


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("wrong", ("sha256 mismatch", "discarded")),
        ("gone", ("HTTP 404", "missing.txt")),
        ("klingon", ("klingon", "book")),
        ("shakespeare", ("built in",)),
    ],
)
def test_cli_fetch_errors(catalogue, name, fragments):
    assert_usage_error(run_cli("corpora", "fetch", name), *fragments)


def test_cli_train_fetches_on_first_use(catalogue, cache, tmp_path):
    """`train --corpus NAME` downloads, cleans and trains; so does `train URL`."""
    args = ("--hidden", "8", "--batch", "2", "--seq-len", "8", "--steps", "2")
    proc = run_cli("train", "--corpus", "book", *args, "--out", tmp_path / "a", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "a" / "config.json").read_text())["corpus"]["download"] == "book"
    proc = run_cli("train", "--resume", tmp_path / "a", "--steps", "3", timeout=120)
    assert proc.returncode == 0, proc.stderr  # the run knows which download it trained on
    url = catalogue.read_text().split('"urls": ["')[1].split('"')[0].replace("gutenberg", "ok")
    proc = run_cli("train", url, *args, "--out", tmp_path / "b", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(list((cache / "corpora").glob("url-*-ok.txt"))) == 1


def test_load_corpus_by_url_is_cached_by_url(base, server):
    text, source = load_corpus(base + "/ok.txt")
    assert source == {"url": base + "/ok.txt", "encoding": "utf-8"}
    assert text.path.read_bytes() == DATA
    assert load_corpus(base + "/ok.txt")[0] == text and len(server.requests) == 1


# ---- built-in corpora ---------------------------------------------------------------------


def test_shakespeare_is_tinyshakespeare():
    text = builtin_corpus("shakespeare")
    assert len(text) == 1_115_394
    assert hashlib.sha256(text.encode()).hexdigest() == SHAKESPEARE_SHA256
    assert text.startswith("First Citizen:")


def test_python_source_is_deterministic_code(tmp_path):
    """The standard library's files, walked in the same order every time, stream into the id
    cache as code: headers, no tests, no codec tables."""
    source = python_source()
    assert source == builtin_corpus("python-source")
    files = [e.rel for e in walk(source)]
    assert files == [e.rel for e in walk(python_source())] and files == sorted(files)
    assert "argparse.py" in files
    assert not any(f.startswith(("test/", "encodings/")) or "/test/" in f for f in files)
    encoded = encode_file(source, "grapheme", tmp_path / "run")
    assert len(encoded.ids) > 1_000_000
    text = encoded.vocab.decode(encoded.ids)
    assert "# ==> argparse.py <==\n" in text and "def " in text


def test_python_source_declared_encodings_and_undecodable_files(tmp_path):
    """Each file is decoded as it declares; one that does not decode is skipped and named."""
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "a.py").write_bytes(b"# -*- coding: latin-1 -*-\nname = '\xe9'\n")
    (root / "pkg" / "b.py").write_bytes(b"x = 1")
    (root / "bad.py").write_bytes(b"x = '\xff'\n")
    (root / "test" / "t.py").write_bytes(b"skipped = True\n")
    encoded = encode_file(python_source(root), "grapheme", tmp_path / "run")
    assert encoded.skipped == ("lib/bad.py",)
    assert encoded.vocab.decode(encoded.ids) == (
        "# ==> a.py <==\n# -*- coding: latin-1 -*-\nname = 'é'\n"
        + FILE_SEPARATOR
        + "# ==> pkg/b.py <==\nx = 1"
    )


@pytest.mark.parametrize("name", ["shakespeare", "python-source"])
def test_builtin_trains(name, tmp_path):
    text, source = load_corpus(name=name)
    assert source == {"builtin": name}
    config = TrainConfig(hidden=8, batch=2, seq_len=8, steps=2, sample_length=0)
    assert train(text, config, tmp_path / "run").step == 2


def test_unknown_corpus_names_builtins_and_downloads():
    with pytest.raises(CorpusError, match=r"python-source.*war-and-peace"):
        load_corpus(name="klingon")
