"""Sampling speed: characters per second from `charrnn.generate` / `generate_many` at H 512,
one stream and 64 streams at once, against the eager per-step loop a PyTorch user would write.

Both run in worker processes in alternating rounds (same thread count); printed are median
chars/s, ratios, and each worker's peak RSS.

    python scripts/bench_sample.py
"""

from __future__ import annotations

import argparse
import json
import time

import _bench


def charrnn_worker(opts: dict) -> dict:
    from charrnn import CharRNN, Vocab, generate, generate_many

    _, V = _bench.corpus_ids()
    vocab = Vocab([chr(33 + i) for i in range(V)])
    model = CharRNN(V, opts["hidden"], seed=0)

    def run(num: int, length: int) -> dict:
        start = time.perf_counter()
        if num == 1:
            text = "".join(generate(model, vocab, length=length, temperature=1.0, seed=0))
        else:
            text = "".join(generate_many(model, vocab, num, length=length, seed=0))
        elapsed = time.perf_counter() - start
        assert len(text) == num * length
        return {"chars_per_sec": num * length / elapsed}

    return {"run": run}


def torch_worker(opts: dict) -> dict:
    import torch
    from peer_torch import TorchCharRNN, torch_sampler_loop

    torch.set_num_threads(opts["threads"])
    _, V = _bench.corpus_ids()
    model = TorchCharRNN(V, opts["hidden"]).eval()

    def run(num: int, length: int) -> dict:
        start = time.perf_counter()
        torch_sampler_loop(model, num, length)
        return {"chars_per_sec": num * length / (time.perf_counter() - start)}

    return {"run": run}


WORKERS = {"charrnn": charrnn_worker, "torch": torch_worker}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--length", type=int, default=2000, help="symbols per stream per round")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _bench.serve(WORKERS[args.worker[0]](json.loads(args.worker[1])))
        return
    peer = not args.no_peer and _bench.torch_available()
    kinds = ["charrnn", "torch"] if peer else ["charrnn"]
    opts = {"hidden": args.hidden, "threads": args.threads}
    workers = {k: _bench.Worker(__file__, k, opts, args.threads) for k in kinds}
    print(f"H {args.hidden}, threads {args.threads}, temperature 1, {args.length} symbols a stream")
    print(f"{'streams':>8} {'charrnn c/s':>12} {'torch c/s':>10} {'ratio':>6}")
    for num in (1, 64):
        samples = {k: [] for k in kinds}
        for k in kinds:  # warm-up
            workers[k].call(op="run", num=num, length=200)
        for r in range(args.rounds):
            for k in kinds if r % 2 == 0 else reversed(kinds):
                samples[k].append(
                    workers[k].call(op="run", num=num, length=args.length)["chars_per_sec"]
                )
        med = {k: _bench.median(v) for k, v in samples.items()}
        t = med.get("torch")
        print(
            f"{num:>8} {med['charrnn']:>12,.0f} {t or 0:>10,.0f} "
            f"{med['charrnn'] / t if t else float('nan'):>6.2f}"
        )
    rss = {k: w.close()["peak_rss_mb"] for k, w in workers.items()}
    print("peak RSS while sampling: " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()))


if __name__ == "__main__":
    main()
