"""The memorisation check's index, two ways, on a large corpus: the suffix array charrnn
builds (charrnn.novelty) against a rolling-hash index (sorted 64-bit hashes of every n-gram,
n = 8, 16, 32, built here only to be measured). For each: build time, peak resident memory
(all of it, and the anonymous part: without the pages of the memory-mapped ids), size on
disk, and the time to answer for a 2,000-symbol text; then the suffix array's answer time
on tinyshakespeare.

The corpus is tinyshakespeare's lines in shuffled order, over and over, to --megabytes (in
--dir, deleted afterwards unless --keep). Each build runs in its own process.

    python scripts/bench_novelty.py --megabytes 200 --dir /tmp/novelty-bench
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import threading
import time
from pathlib import Path

import _bench

NGRAMS = (8, 16, 32)
HASH_BASE, HASH_MIX = 0x100000001B3, 0x9E3779B97F4A7C15  # FNV prime; golden-ratio mixer
HASH_BUCKETS = 64  # by the top 6 bits: the hashes of one n are sorted a bucket at a time
HASH_CHUNK = 4 << 20  # n-grams hashed at a time


class MemoryWatch:
    """The peak of this process's anonymous resident memory (RssAnon), sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak_kb, self.running = 0, True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while self.running:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            time.sleep(0.02)

    def stop(self) -> float:
        self.running = False
        self.thread.join()
        return self.peak_kb / 1024


def make_corpus(path: Path, megabytes: int) -> None:
    lines = _bench.SHAKESPEARE.read_text(encoding="utf-8").splitlines(keepends=True)
    rng, size = random.Random(0), 0
    with open(path, "w", encoding="utf-8") as f:
        while size < megabytes << 20:
            rng.shuffle(lines)
            text = "".join(lines)
            f.write(text)
            size += len(text.encode())


def hash_ngrams(ids, n: int, start: int, stop: int):
    """Mixed polynomial hashes (uint64, wrapping) of the n-grams starting in [start, stop)."""
    import numpy as np

    seg = np.asarray(ids[start : stop + n - 1]).astype(np.uint64)
    m = len(seg) - n + 1
    h = np.zeros(m, np.uint64)
    for j in range(n):
        h *= np.uint64(HASH_BASE)
        h += seg[j : j + m]
    h ^= h >> np.uint64(29)
    h *= np.uint64(HASH_MIX)
    return h


def build_hash_index(ids, folder: Path) -> None:
    """Per n: every n-gram's hash, spread into bucket files by its top bits in one pass, then
    each bucket sorted and deduplicated into one sorted table: memory bounded by a chunk and
    a bucket."""
    import numpy as np

    for n in NGRAMS:
        parts = [open(folder / f"h{n}.{b}.part", "wb") for b in range(HASH_BUCKETS)]  # noqa: SIM115
        for start in range(0, len(ids) - n + 1, HASH_CHUNK):
            h = hash_ngrams(ids, n, start, min(start + HASH_CHUNK, len(ids) - n + 1))
            bucket = (h >> np.uint64(58)).astype(np.int64)
            order = np.argsort(bucket, kind="stable")
            h, edges = h[order], np.searchsorted(bucket[order], np.arange(HASH_BUCKETS + 1))
            for b in range(HASH_BUCKETS):
                parts[b].write(h[edges[b] : edges[b + 1]].data)
        with open(folder / f"hash{n}.u64", "wb") as out:
            for b, part in enumerate(parts):
                part.close()
                name = folder / f"h{n}.{b}.part"
                out.write(np.unique(np.fromfile(name, np.uint64)).data)
                name.unlink()


def worker(opts: dict) -> dict:
    import numpy as np

    from charrnn import novelty

    folder = Path(opts["folder"])
    ids = np.load(folder / "corpus.ids.npy", mmap_mode="r")
    meta = json.loads((folder / "corpus.json").read_text())
    vocab_size = len(meta["vocab"]["symbols"])
    query = np.asarray(ids[len(ids) // 3 : len(ids) // 3 + 2000]).astype(np.int64)

    def build() -> dict:
        watch, start = MemoryWatch(), time.perf_counter()
        if opts["kind"] == "suffix-array":
            novelty.build_index(ids, vocab_size, folder, "bench")
            files = [folder / novelty.INDEX_FILE]
        else:
            build_hash_index(ids, folder)
            files = [folder / f"hash{n}.u64" for n in NGRAMS]
        seconds = time.perf_counter() - start
        return {
            "seconds": seconds,
            "peak_anon_mb": watch.stop(),
            "peak_rss_mb": _bench.peak_rss_mb(),
            "disk_mb": sum(f.stat().st_size for f in files) / 2**20,
        }

    def query_time() -> dict:
        start = time.perf_counter()
        if opts["kind"] == "suffix-array":
            suffixes = np.load(folder / novelty.INDEX_FILE, mmap_mode="r")
            index = novelty.TrainingIndex(ids, suffixes, None)
            lengths, _ = index.matches(query)
            answer = {n: float(np.mean(lengths[: len(query) - n + 1] >= n)) for n in NGRAMS}
        else:
            answer = {}
            for n in NGRAMS:
                table = np.memmap(folder / f"hash{n}.u64", np.uint64, mode="r")
                h = hash_ngrams(query, n, 0, len(query) - n + 1)
                at = np.minimum(np.searchsorted(table, h), len(table) - 1)
                answer[n] = float(np.mean(table[at] == h))
        return {"seconds": time.perf_counter() - start, "shares": answer}

    return {"build": build, "query": query_time}


WORKERS = {"suffix-array": worker, "rolling-hash": worker}


def encode(text_path: Path, folder: Path) -> None:
    """The corpus's id cache in `folder`, as `charrnn train` writes it."""
    from charrnn.corpus import TextFile, encode_file

    encode_file(TextFile(text_path), "grapheme", folder)


def measure(kind: str, folder: Path, rounds: int) -> dict:
    w = _bench.Worker(__file__, kind, {"folder": str(folder), "kind": kind}, threads=1)
    built = w.call(op="build")
    queries = [w.call(op="query") for _ in range(rounds)]
    w.close()
    built["query_s"] = _bench.median([q["seconds"] for q in queries])
    built["shares"] = queries[0]["shares"]
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/charrnn-novelty-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the corpus and indexes")
    parser.add_argument("--rounds", type=int, default=5, help="answers timed per index (5)")
    parser.add_argument(
        "--kinds", nargs="+", default=["suffix-array", "rolling-hash"], help="indexes to build"
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _bench.serve(WORKERS[args.worker[0]](json.loads(args.worker[1])))
        return
    print(f"BLAS: {_bench.blas_info()}")
    big, small = args.dir / "big", args.dir / "tinyshakespeare"
    try:
        for folder in (big, small):
            folder.mkdir(parents=True, exist_ok=True)
        corpus = args.dir / "corpus.txt"
        if not corpus.exists():
            make_corpus(corpus, args.megabytes)
        start = time.perf_counter()
        encode(corpus, big)
        encode(_bench.SHAKESPEARE, small)
        print(
            f"corpus: {corpus.stat().st_size / 2**20:,.0f} MB of shuffled tinyshakespeare "
            f"lines; encoded to ids in {time.perf_counter() - start:.1f} s"
        )
        print(
            f"{'index':<14} {'build s':>8} {'peak RSS MB':>12} {'anon MB':>8} {'disk MB':>8} "
            f"{'answer s':>9}  shares of 8/16/32-grams"
        )
        for kind in args.kinds:
            r = measure(kind, big, args.rounds)
            shares = "/".join(f"{r['shares'][str(n)]:.3f}" for n in NGRAMS)
            print(
                f"{kind:<14} {r['seconds']:>8.1f} {r['peak_rss_mb']:>12,.0f} "
                f"{r['peak_anon_mb']:>8,.0f} {r['disk_mb']:>8,.0f} {r['query_s']:>9.3f}  {shares}"
            )
        r = measure("suffix-array", small, args.rounds)
        print(
            f"tinyshakespeare, suffix array: built in {r['seconds']:.1f} s; a 2,000-symbol "
            f"text answered in {r['query_s'] * 1000:.0f} ms (median of {args.rounds})"
        )
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
