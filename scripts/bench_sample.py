"""Sampling speed: characters per second from `charrnn.generate` / `generate_many` at H 512,
one stream and 64 streams at once, against the eager per-step loop a PyTorch user would write
over the same model (nn.RNN, nn.LSTM or nn.GRU of L layers, one-hot input, nn.Linear).

Both run in worker processes in alternating rounds (same thread count); printed are median
chars/s, ratios, each worker's peak RSS, its parameter count and the BLAS it ran.

    python scripts/bench_sample.py
    python scripts/bench_sample.py --cell lstm --layers 2
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
    model = CharRNN(V, opts["hidden"], seed=0, cell=opts["cell"], layers=opts["layers"])

    def run(num: int, length: int) -> dict:
        start = time.perf_counter()
        if num == 1:
            text = "".join(generate(model, vocab, length=length, temperature=1.0, seed=0))
        else:
            text = "".join(generate_many(model, vocab, num, length=length, seed=0))
        elapsed = time.perf_counter() - start
        assert len(text) == num * length
        return {"chars_per_sec": num * length / elapsed}

    def info() -> dict:
        return {
            "params": f"{sum(p.size for p in model.params.values()):,}",
            "blas": _bench.blas_info(),
        }

    return {"run": run, "info": info}


def torch_worker(opts: dict) -> dict:
    import torch
    from peer_torch import TorchCharRNN, kernel_info, torch_sampler_loop

    torch.set_num_threads(opts["threads"])
    _, V = _bench.corpus_ids()
    model = TorchCharRNN(V, opts["hidden"], opts["cell"], opts["layers"]).eval()

    def run(num: int, length: int) -> dict:
        start = time.perf_counter()
        torch_sampler_loop(model, num, length)
        return {"chars_per_sec": num * length / (time.perf_counter() - start)}

    def info() -> dict:
        params = sum(p.numel() for p in model.parameters())
        matched = params - model.redundant_params()
        return {
            "params": f"{params:,} ({matched:,} without redundant bias_hh)",
            "blas": kernel_info(),
        }

    return {"run": run, "info": info}


WORKERS = {"charrnn": charrnn_worker, "torch": torch_worker}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="rnn")
    parser.add_argument("--layers", type=int, default=1)
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
    opts = {
        "hidden": args.hidden,
        "threads": args.threads,
        "cell": args.cell,
        "layers": args.layers,
    }
    workers = {k: _bench.Worker(__file__, k, opts, args.threads) for k in kinds}
    print(
        f"cell {args.cell}, L {args.layers}, H {args.hidden}, threads {args.threads}, "
        f"temperature 1, {args.length} symbols a stream"
    )
    for k, w in workers.items():
        info = w.call(op="info")
        print(f"{k}: {info['params']} parameters; BLAS {info['blas']}")
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
