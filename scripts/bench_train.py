"""Training throughput: charrnn against PyTorch on the CPU, and against min-char-rnn.

For each hidden size, a charrnn worker and (when torch imports) a PyTorch worker train the
same model (V from tinyshakespeare, one-hot input, tanh RNN, linear, softmax, Adam, clip 5.0,
float32, the same thread count) in alternating rounds; printed are median chars/s, the ratio,
achieved GFLOP/s and its share of the GEMM peak measured at start, and each worker's peak RSS.
A third worker runs only the matrix products of a charrnn step (same shapes and layouts):
its chars/s over PyTorch's is the ceiling of the ratio, and its GFLOP/s over the peak the
ceiling of the peak fraction, what charrnn would reach if everything but the GEMMs took no
time.

FLOPs per step counted: 6 * T * B * (H*H + H*V), i.e. forward, backward-data and
backward-weight products of the recurrence and the output layer (the one-hot input
projection is a gather and counts zero).

    python scripts/bench_train.py                 # H 128, 256, 512 at B 64, T 100
    python scripts/bench_train.py --hidden 512 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import _bench


def charrnn_worker(opts: dict) -> dict:
    import numpy as np

    from charrnn.model import CharRNN
    from charrnn.optim import clip_grad_norm, make_optimizer

    ids, V = _bench.corpus_ids()
    B, T, H = opts["batch"], opts["seq_len"], opts["hidden"]
    dtype = np.float64 if opts.get("float64") else np.float32
    model = CharRNN(V, H, seed=0, dtype=dtype)
    optimizer = make_optimizer(opts.get("optimizer", "adam"), model.params)
    lr, clip = opts.get("lr", 2e-3), opts.get("clip", 5.0)
    L = (len(ids) - 1) // B
    x_all, y_all = ids[: B * L].reshape(B, L), ids[1 : B * L + 1].reshape(B, L)
    state = {"h": model.zero_state(B), "k": 0}

    def train_step() -> float:
        k = state["k"] % (L // T)
        state["k"] += 1
        cols = slice(k * T, (k + 1) * T)
        loss, grads, state["h"] = model.loss_and_grads(x_all[:, cols], y_all[:, cols], state["h"])
        clip_grad_norm(grads, clip)
        optimizer.step(model.params, grads, lr)
        return loss

    return {"run": lambda seconds: timed_round(train_step, seconds, B * T)}


def torch_worker(opts: dict) -> dict:
    import torch
    from peer_torch import TorchTrainer

    torch.set_num_threads(opts["threads"])
    ids, V = _bench.corpus_ids()
    B, T, H = opts["batch"], opts["seq_len"], opts["hidden"]
    trainer = TorchTrainer(V, H, B, T, lr=2e-3, clip=5.0)
    ids = torch.as_tensor(ids)
    L = (len(ids) - 1) // B
    x_all, y_all = (
        ids[: B * L].view(B, L).T.contiguous(),
        ids[1 : B * L + 1].view(B, L).T.contiguous(),
    )
    state = {"k": 0}

    def train_step() -> float:
        k = state["k"] % (L // T)
        state["k"] += 1
        return trainer.step(x_all[k * T : (k + 1) * T], y_all[k * T : (k + 1) * T])

    return {"run": lambda seconds: timed_round(train_step, seconds, B * T)}


def gemm_only_worker(opts: dict) -> dict:
    """Only the matrix products of a charrnn step, same shapes, layouts and order as
    `CharRNN.loss_and_grads`: what a step would cost if nothing else took any time."""
    import numpy as np

    B, T, H, V = opts["batch"], opts["seq_len"], opts["hidden"], _bench.corpus_ids()[1]
    N = T * B
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.standard_normal(shape, dtype=np.float32) * 0.05

    hs, dz, W_hh, W_hy = rand(T + 1, B, H), rand(T, B, H), rand(H, H), rand(H, V)
    W_hh_T, W_hy_T = np.ascontiguousarray(W_hh.T), np.ascontiguousarray(W_hy.T)
    logits_t, step_out = rand(V, N), rand(B, H)
    one_hot_t, ones = np.zeros((V, N), np.float32), np.ones(N, np.float32)

    def train_step() -> float:
        for t in range(T):  # forward recurrence
            np.matmul(hs[t], W_hh, out=step_out)
        h_flat = hs[1:].reshape(N, H)
        np.matmul(W_hy.T, h_flat.T, out=logits_t)  # output layer, (V, TB)
        _ = logits_t @ h_flat, logits_t @ ones  # dW_hy, db_y
        np.matmul(logits_t.T, W_hy_T, out=dz.reshape(N, H))  # dL/dh from the output
        for t in range(T - 1, 0, -1):  # backward recurrence
            np.matmul(dz[t], W_hh_T, out=step_out)
        da = dz.reshape(N, H)
        _ = hs[:-1].reshape(N, H).T @ da, one_hot_t @ da  # dW_hh, dW_xh
        return 0.0

    return {"run": lambda seconds: timed_round(train_step, seconds, B * T)}


def min_char_rnn_worker(opts: dict) -> dict:
    from min_char_rnn import MinCharRNN

    ids, V = _bench.corpus_ids()
    T = opts["seq_len"]
    model = MinCharRNN(V, opts["hidden"])
    state = {"p": 0}

    def train_step() -> float:
        p = state["p"] if state["p"] + T + 1 < len(ids) else 0
        state["p"] = p + T
        return model.step(ids[p : p + T].tolist(), ids[p + 1 : p + T + 1].tolist())

    return {"run": lambda seconds: timed_round(train_step, seconds, T)}


def timed_round(train_step, seconds: float, chars_per_step: int) -> dict:
    """Steps for about `seconds` after one warm-up step; chars/s over the timed steps."""
    train_step()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loss = train_step()
        steps += 1
    elapsed = time.perf_counter() - start
    return {"chars_per_sec": steps * chars_per_step / elapsed, "steps": steps, "loss": loss}


WORKERS = {
    "charrnn": charrnn_worker,
    "torch": torch_worker,
    "min-char-rnn": min_char_rnn_worker,
    "gemms": gemm_only_worker,
}


def compare(kinds: list[str], options: dict, rounds: int, seconds: float, threads: int):
    """Alternate rounds between workers of each kind; medians, all samples and peak RSS."""
    workers = {
        k: _bench.Worker(__file__, k, options.get(k, options["common"]), threads) for k in kinds
    }
    samples = {k: [] for k in kinds}
    for r in range(rounds):
        for k in kinds if r % 2 == 0 else reversed(kinds):
            samples[k].append(workers[k].call(op="run", seconds=seconds)["chars_per_sec"])
    rss = {k: w.close()["peak_rss_mb"] for k, w in workers.items()}
    return {k: _bench.median(v) for k, v in samples.items()}, samples, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=2.0)
    parser.add_argument("--no-peer", action="store_true", help="charrnn alone, even with torch")
    parser.add_argument("--no-min-char-rnn", action="store_true")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, opts = args.worker[0], json.loads(args.worker[1])
        _bench.serve(WORKERS[kind](opts))
        return

    _bench.set_threads(args.threads)
    peak = _bench.gemm_peak(args.threads)
    print(
        f"threads {args.threads}; float32 GEMM peak {peak['square_2048']:.0f} GFLOP/s "
        f"(2048^3), RNN-shaped (64x512)@(512x512) {peak['rnn_64x512x512']:.0f} GFLOP/s"
    )
    peer = not args.no_peer and _bench.torch_available()
    if not peer:
        print("torch is not importable (or --no-peer): charrnn figures alone")
    kinds = ["charrnn", "torch"] if peer else ["charrnn"]
    kinds += ["gemms"]  # the ceiling: a step's matrix products alone
    V = _bench.corpus_ids()[1]
    header = (
        f"{'H':>5} {'B':>4} {'T':>4} {'charrnn c/s':>12} {'torch c/s':>10} {'ratio':>6} "
        f"{'GFLOP/s':>8} {'of peak':>8} {'RSS MB':>7} {'torch RSS':>9} "
        f"{'GEMMs c/s':>10} {'ceiling':>7} {'of peak':>8}"
    )
    print(header)
    for H in args.hidden:
        common = {
            "hidden": H,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "threads": args.threads,
        }
        med, _, rss = compare(
            kinds, {"common": common}, args.rounds, args.round_seconds, args.threads
        )
        flops = 6 * args.seq_len * args.batch * (H * H + H * V)
        gflops = med["charrnn"] / (args.batch * args.seq_len) * flops / 1e9
        gemm_gflops = med["gemms"] / (args.batch * args.seq_len) * flops / 1e9
        t = med.get("torch")
        print(
            f"{H:>5} {args.batch:>4} {args.seq_len:>4} {med['charrnn']:>12,.0f} "
            f"{t or 0:>10,.0f} {med['charrnn'] / t if t else float('nan'):>6.2f} "
            f"{gflops:>8.1f} {gflops / peak['square_2048']:>8.0%} {rss['charrnn']:>7.0f} "
            f"{rss.get('torch', float('nan')):>9.0f} {med['gemms']:>10,.0f} "
            f"{med['gemms'] / t if t else float('nan'):>7.2f} "
            f"{gemm_gflops / peak['square_2048']:>8.0%}"
        )
        sys.stdout.flush()
    if not args.no_min_char_rnn:
        opts = {
            "hidden": 100,
            "batch": 1,
            "seq_len": 25,
            "optimizer": "adagrad",
            "lr": 0.1,
            "threads": args.threads,
        }
        med, _, _ = compare(
            ["charrnn", "min-char-rnn"],
            {"common": opts},
            args.rounds,
            args.round_seconds,
            args.threads,
        )
        print(
            f"min-char-rnn settings (H 100, B 1, T 25, Adagrad 0.1): charrnn "
            f"{med['charrnn']:,.0f} chars/s, min-char-rnn algorithm {med['min-char-rnn']:,.0f} "
            f"chars/s, ratio {med['charrnn'] / med['min-char-rnn']:.2f}"
        )


if __name__ == "__main__":
    main()
