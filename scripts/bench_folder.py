"""Many small files: time from `charrnn.train` to its first step on a folder of N small files
against one file holding the same text (the files joined by FILE_SEPARATOR, so both corpora are
the same symbols), alternating the two for a few rounds in one process, each in a fresh run
directory (so each encodes its corpus into a new id cache). The files are cut from this
Python's standard library sources (at most --max-bytes each, at a line end), in a temporary
directory, never committed; only ASCII files, so that both corpora take the fast encoding
path and the difference is the cost of many files. The target: the folder starts in under
twice the file's time.

    python scripts/bench_folder.py               # 10,000 files
    python scripts/bench_folder.py --files 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import _bench


def source_texts(max_bytes: int) -> list[str]:
    """The standard library's UTF-8 `.py` files, each cut to at most max_bytes at a line end."""
    texts = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if len(text.encode()) > max_bytes:
            text = text.encode()[:max_bytes].decode("utf-8", "ignore")
            text = text[: text.rfind("\n") + 1]
        # ASCII without CR: one symbol per code point, so neither corpus takes the slow
        # grapheme split (a single 8 MiB piece with one combining mark would), and the
        # comparison is the cost of many files, not of the symbols.
        if text.strip() and text.isascii() and "\x00" not in text and "\r" not in text:
            texts.append(text)
    return texts


def make_corpora(root: Path, n_files: int, max_bytes: int) -> tuple[Path, Path, int]:
    """A folder of n_files files in subdirectories of 100, and one file of the same text."""
    from charrnn.corpus import FILE_SEPARATOR

    texts = source_texts(max_bytes)
    folder, parts = root / "folder", []
    for i in range(n_files):
        text = texts[i % len(texts)]
        path = folder / f"d{i // 100:03}" / f"f{i % 100:02}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        parts.append(text)
    one = root / "one.txt"
    text = FILE_SEPARATOR.join(parts)
    one.write_text(text, encoding="utf-8")
    return folder, one, len(text)


def time_to_first_step(corpus, run_dir: Path) -> tuple[float, float]:
    """Seconds from the train call to its start (corpus encoded, model built) and to the end
    of its one step."""
    import charrnn

    started = {}

    class Clock(charrnn.training.Observer):
        def on_start(self, info: dict) -> None:
            started["at"] = time.perf_counter()

    config = charrnn.TrainConfig(
        hidden=64, steps=1, eval_every=10**9, sample_length=0, eval_symbols=2
    )
    t0 = time.perf_counter()
    charrnn.train(corpus, config, run_dir, observer=Clock())
    return started["at"] - t0, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--max-bytes", type=int, default=4096, help="largest file (4096)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    _bench.set_threads(args.threads)
    from charrnn import TextFile, TextFiles

    print(_bench.blas_info())
    with tempfile.TemporaryDirectory() as tmp:
        folder, one, chars = make_corpora(Path(tmp), args.files, args.max_bytes)
        print(
            f"{args.files:,} files of at most {args.max_bytes:,} bytes, {chars:,} characters in "
            f"all; one file of the same text ({one.stat().st_size / 1e6:.1f} MB)"
        )
        corpora = {"folder": TextFiles((folder,)), "one file": TextFile(one)}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in corpora}
        for r in range(args.rounds):
            for name, corpus in corpora.items():
                run = Path(tmp) / f"run-{r}-{name.replace(' ', '-')}"
                times[name].append(time_to_first_step(corpus, run))
    print(f"{'':10} {'to start (median)':>18} {'to first step':>14}   rounds (start)")
    medians = {}
    for name, rows in times.items():
        start = statistics.median(t for t, _ in rows)
        step = statistics.median(s for _, s in rows)
        medians[name] = step
        shown = ", ".join(f"{t:.2f}" for t, _ in rows)
        print(f"{name:10} {start:>17.2f}s {step:>13.2f}s   {shown}")
    ratio = medians["folder"] / medians["one file"]
    print(f"folder / one file, to the first step: {ratio:.2f} (target < 2)")


if __name__ == "__main__":
    main()
