"""Training throughput: charrnn against PyTorch on the CPU, and against min-char-rnn.

For each hidden size, a charrnn worker and (when torch imports) a PyTorch worker train the
same model (V from tinyshakespeare, one-hot input, L layers of a tanh RNN, LSTM or GRU cell,
linear, softmax, Adam, clip 5.0, float32, the same thread count, state carried between chunks
with the gradient cut) in alternating rounds; printed are median chars/s, the ratio, achieved
GFLOP/s and its share of the GEMM peak measured at start, and each worker's peak RSS, then
each worker's parameter count and BLAS kernels. A third worker runs only the matrix products
of a charrnn step (same shapes, layouts, order and BLAS thread policy): its chars/s over
PyTorch's is the ceiling of the ratio, and its GFLOP/s over the peak the ceiling of the peak
fraction, what charrnn would reach if everything but the GEMMs took no time.

FLOPs per character counted: 6 * (G*H*H*(2L-1) + H*V) for G gate blocks (1 rnn, 4 lstm,
3 gru), i.e. forward, backward-data and backward-weight products of each layer's recurrence
(G*H*H), of the input projections of the L-1 layers above the first (G*H*H; the first
layer's one-hot projection is a gather and counts zero) and of the output layer (H*V).

--check-peer copies a charrnn model's weights (biases made nonzero) into the PyTorch model
and compares two chunks' losses (the second from each side's carried state), the carried
states and the gradients: a correctness check of the peer that costs one chunk's work.

    python scripts/bench_train.py                 # rnn, 1 layer, H 128, 256, 512, B 64, T 100
    python scripts/bench_train.py --hidden 512 --rounds 7
    python scripts/bench_train.py --cell lstm --layers 2 --hidden 256 512
    python scripts/bench_train.py --cell gru --layers 2 --check-peer
    python scripts/bench_train.py --cell lstm --hidden 256 --workers 2
    python scripts/bench_train.py --cell lstm --hidden 256 --scaling   # 1, 2, 4 ... workers
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
    from charrnn.parallel import DataParallel

    ids, V = _bench.corpus_ids()
    B, T, H = opts["batch"], opts["seq_len"], opts["hidden"]
    dtype = np.float64 if opts.get("float64") else np.float32
    model = CharRNN(
        V, H, seed=0, dtype=dtype, cell=opts.get("cell", "rnn"), layers=opts.get("layers", 1)
    )
    parallel = DataParallel(model, opts.get("workers", 1))  # one worker: the model's own calls
    optimizer = make_optimizer(opts.get("optimizer", "adam"), model.params)
    lr, clip = opts.get("lr", 2e-3), opts.get("clip", 5.0)
    L = (len(ids) - 1) // B
    x_all, y_all = ids[: B * L].reshape(B, L), ids[1 : B * L + 1].reshape(B, L)
    state = {"h": model.zero_state(B), "k": 0}

    def train_step() -> float:
        k = state["k"] % (L // T)
        state["k"] += 1
        cols = slice(k * T, (k + 1) * T)
        loss, grads, state["h"] = parallel.loss_and_grads(
            x_all[:, cols], y_all[:, cols], state["h"]
        )
        clip_grad_norm(grads, clip)
        optimizer.step(model.params, grads, lr)
        return loss

    def info() -> dict:
        params = sum(p.size for p in model.params.values())
        return {"params": params, "matched": params, "blas": _bench.blas_info()}

    return {"run": lambda seconds: timed_round(train_step, seconds, B * T), "info": info}


def torch_worker(opts: dict) -> dict:
    import torch
    from peer_torch import TorchTrainer, kernel_info

    torch.set_num_threads(opts["threads"])
    ids, V = _bench.corpus_ids()
    B, T, H = opts["batch"], opts["seq_len"], opts["hidden"]
    trainer = TorchTrainer(
        V,
        H,
        B,
        T,
        lr=2e-3,
        clip=5.0,
        cell=opts.get("cell", "rnn"),
        layers=opts.get("layers", 1),
    )
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

    def info() -> dict:
        params = sum(p.numel() for p in trainer.model.parameters())
        matched = params - trainer.model.redundant_params()
        return {"params": params, "matched": matched, "blas": kernel_info()}

    return {"run": lambda seconds: timed_round(train_step, seconds, B * T), "info": info}


def gemm_only_worker(opts: dict) -> dict:
    """Only the matrix products of a charrnn step, same shapes, layouts, order and BLAS thread
    policy as `CharRNN.loss_and_grads` and the cells: what a step would cost if nothing else
    took any time. With `workers`, each of that many threads runs the products of its slice
    of the streams on one BLAS thread, as `parallel.DataParallel` does."""
    from concurrent.futures import ThreadPoolExecutor

    from charrnn import blas
    from charrnn.parallel import stream_slices

    B, workers = opts["batch"], opts.get("workers", 1)
    if workers == 1:
        steps = [gemm_step({**opts, "batch": B})]
    else:
        steps = [gemm_step({**opts, "batch": s.stop - s.start}) for s in stream_slices(B, workers)]
    pool = ThreadPoolExecutor(workers)

    def train_step() -> float:
        if workers == 1:
            return steps[0]()
        with blas.pinned_one_thread():
            list(pool.map(lambda step: step(), steps))
        return 0.0

    return {"run": lambda seconds: timed_round(train_step, seconds, B * opts["seq_len"])}


def gemm_step(opts: dict):
    """A function running the matrix products of one charrnn step of `opts`' shapes."""
    import numpy as np

    from charrnn import blas
    from charrnn.cells import CELLS, ONE_THREAD_MAX_PRODUCT, block_products

    B, T, H, V = opts["batch"], opts["seq_len"], opts["hidden"], _bench.corpus_ids()[1]
    G = CELLS[opts.get("cell", "rnn")].gates
    N, GH = T * B, G * H
    one_thread = B * H * GH <= ONE_THREAD_MAX_PRODUCT  # as the cells' recurrence loops
    rng = np.random.default_rng(0)

    def rand(*shape):
        return rng.standard_normal(shape, dtype=np.float32) * 0.05

    layers = []
    for layer in range(opts.get("layers", 1)):
        hs, xw, W_hh = rand(T + 1, B, H), rand(G, T, B, H), rand(H, GH)
        layers.append(
            {
                "hs": hs,  # h_0 .. h_T
                "hs_steps": list(hs),
                "xw": xw,  # gate-major x W_xh + b_h, then dL/dxw
                "blocks": xw.reshape(G, N, H),
                "W_xh": rand(V if layer == 0 else H, GH),
                "W_hh": W_hh,
                "W_hh_T": np.ascontiguousarray(W_hh.T),
            }
        )
    W_hy = rand(H, V)
    W_hy_T = np.ascontiguousarray(W_hy.T)
    logits_t, a, dnext, dh, dh2 = rand(V, N), rand(B, GH), rand(B, H), rand(N, H), rand(N, H)
    one_hot_t, ones = np.zeros((V, N), np.float32), np.ones(N, np.float32)

    def train_step() -> float:
        below = None  # (TB, H): the layer below's output
        for layer, w in enumerate(layers):
            if layer > 0:  # the input projection, a GEMM per gate; layer 1's is a gather
                for k in range(G):
                    np.matmul(below, w["W_xh"][:, k * H : (k + 1) * H], out=w["blocks"][k])
            W_hh, hs_steps = w["W_hh"], w["hs_steps"]
            with blas.one_thread(one_thread):
                for t in range(T):  # forward recurrence
                    np.matmul(hs_steps[t], W_hh, out=a)  # (B, GH)
            below = w["hs"][1:].reshape(N, H)
        np.matmul(W_hy.T, below.T, out=logits_t)  # output layer, (V, TB)
        _ = logits_t @ below, logits_t @ ones  # dW_hy, db_y
        np.matmul(logits_t.T, W_hy_T, out=dh)  # dL/dh from the output
        for layer in range(len(layers) - 1, -1, -1):
            w = layers[layer]
            W_hh_T, blocks = w["W_hh_T"], w["blocks"]
            with blas.one_thread(one_thread):
                for _ in range(T - 1, 0, -1):  # backward recurrence, dxw_t copied into a
                    np.matmul(a, W_hh_T, out=dnext)  # (B, H)
            _ = block_products(w["hs"][:-1].reshape(N, H).T, blocks)  # dW_hh, (H, GH)
            if layer == 0:
                _ = one_hot_t @ blocks  # dW_xh: the gather's gradient, a GEMM per gate block
            else:
                below = layers[layer - 1]["hs"][1:].reshape(N, H)
                _ = block_products(below.T, blocks), ones @ blocks  # dW_xh, db_h
                W_xh_T = w["W_xh"].T  # (GH, H); dL/dh of the layer below, a GEMM per block
                for k in range(G):
                    np.matmul(blocks[k], W_xh_T[k * H : (k + 1) * H], out=dh if k == 0 else dh2)
        return 0.0

    return train_step


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
    loss = train_step()
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
    # --scaling's references beside N workers: one worker on one core, one on N BLAS threads,
    # and N processes side by side on a slice of the streams each (with no gradients to sum:
    # the bound of data parallelism over processes)
    "charrnn-one-core": charrnn_worker,
    "charrnn-blas-threads": charrnn_worker,
    "charrnn-processes": charrnn_worker,
}


def compare(kinds: list[str], options: dict, rounds: int, seconds: float, threads: int):
    """Alternate rounds between workers of each kind; medians, all samples, peak RSS and
    what the workers that know it tell of themselves (parameter count, BLAS)."""
    opts = {k: options.get(k, options["common"]) for k in kinds}
    workers = {
        k: _bench.WorkerGroup(__file__, k, opts[k], 1, opts[k]["processes"])
        if "processes" in opts[k]
        else _bench.Worker(__file__, k, opts[k], opts[k].get("threads", threads))
        for k in kinds
    }
    samples = {k: [] for k in kinds}
    for r in range(rounds):
        for k in kinds if r % 2 == 0 else reversed(kinds):
            samples[k].append(workers[k].call(op="run", seconds=seconds)["chars_per_sec"])
    info = {k: w.call(op="info") for k, w in workers.items() if k in INFO_KINDS}
    rss = {k: w.close()["peak_rss_mb"] for k, w in workers.items()}
    return {k: _bench.median(v) for k, v in samples.items()}, samples, rss, info


INFO_KINDS = ("charrnn", "torch")


def scaling(args: argparse.Namespace, peer: bool) -> None:
    """Throughput of N workers for N = 1, 2, 4, ... up to the usable cores, each count in
    alternating rounds beside one worker on one core, one worker on N BLAS threads (the path
    of --workers 1), PyTorch on N threads and the GEMMs alone split over N workers."""
    from charrnn.parallel import usable_cores

    cores = usable_cores()
    counts = sorted({1, cores} | {2**k for k in range(1, 10) if 2**k < cores})
    H = args.hidden[0]
    print(
        f"scaling, {args.cell} L {args.layers} H {H} B {args.batch} T {args.seq_len}, "
        f"{cores} usable cores; chars/s, medians of {args.rounds} alternating rounds"
    )
    print(
        f"{'workers':>7} {'charrnn':>9} {'x 1 core':>8} {'1 worker':>9} {'x it':>5} "
        f"{'processes':>9} {'torch':>9} {'x torch':>7} {'GEMMs':>9} {'of GEMMs':>8} "
        f"{'RSS MB':>6}"
    )
    for n in counts:
        common = {
            "hidden": H,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "cell": args.cell,
            "layers": args.layers,
            "threads": n,
        }
        options = {
            "common": common,
            "charrnn": {**common, "workers": n},
            "gemms": {**common, "workers": n},
            "charrnn-one-core": {**common, "threads": 1},
            "charrnn-processes": {**common, "batch": args.batch // n, "processes": n},
        }
        more = ["charrnn-one-core", "charrnn-blas-threads", "charrnn-processes"]
        kinds = ["charrnn", *(more if n > 1 else [])]
        kinds += [*(["torch"] if peer else []), "gemms"]
        med, _, rss, _ = compare(kinds, options, args.rounds, args.round_seconds, n)
        one_core = med.get("charrnn-one-core", med["charrnn"])
        one_worker = med.get("charrnn-blas-threads", med["charrnn"])
        torch = med.get("torch", float("nan"))
        processes = med.get("charrnn-processes", med["charrnn"])
        print(
            f"{n:>7} {med['charrnn']:>9,.0f} {med['charrnn'] / one_core:>8.2f} "
            f"{one_worker:>9,.0f} {med['charrnn'] / one_worker:>5.2f} {processes:>9,.0f} "
            f"{torch:>9,.0f} "
            f"{med['charrnn'] / torch:>7.2f} {med['gemms']:>9,.0f} "
            f"{med['charrnn'] / med['gemms']:>8.0%} {rss['charrnn']:>6.0f}"
        )
        sys.stdout.flush()


def check_peer(cell: str, layers: int, H: int, B: int, T: int, threads: int) -> bool:
    """charrnn's weights (every bias made nonzero) copied into the PyTorch model: two chunks'
    losses, carried states and gradients must agree to float32 precision."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from peer_torch import TorchCharRNN, detach_state

    from charrnn.model import CharRNN

    torch.set_num_threads(threads)
    ids, V = _bench.corpus_ids()
    model = CharRNN(V, H, seed=0, cell=cell, layers=layers)
    rng = np.random.default_rng(1)
    for name, p in model.params.items():  # so that a bias copied to the wrong place shows
        if name.startswith("b_"):
            p += rng.uniform(-0.2, 0.2, p.shape).astype(p.dtype)
    peer = TorchCharRNN(V, H, cell, layers)
    peer.load_charrnn(model.params)
    n_torch = sum(p.numel() for p in peer.parameters())
    n_charrnn = sum(p.size for p in model.params.values())
    print(
        f"check-peer {cell}, L {layers}, H {H}, B {B}, T {T}: parameters charrnn {n_charrnn:,}, "
        f"torch {n_torch:,} = {n_torch - peer.redundant_params():,} "
        f"+ {peer.redundant_params():,} redundant bias_hh"
    )
    x, y = ids[: B * 2 * T].reshape(B, 2 * T), ids[1 : B * 2 * T + 1].reshape(B, 2 * T)
    state, torch_state = model.zero_state(B), peer.zero_state(B)
    ok = n_charrnn == n_torch - peer.redundant_params()
    for chunk in range(2):  # the second from each side's own carried state
        cols = slice(chunk * T, (chunk + 1) * T)
        loss, grads, state = model.loss_and_grads(x[:, cols], y[:, cols], state)
        peer.zero_grad(set_to_none=True)
        logits, torch_state = peer(torch.as_tensor(x[:, cols].T.copy()), detach_state(torch_state))
        torch_loss = F.cross_entropy(
            logits.reshape(-1, V), torch.as_tensor(y[:, cols].T.copy()).reshape(-1)
        )
        torch_loss.backward()
        torch_grads = peer.charrnn_grads()
        grad_err = max(
            float(np.abs(grads[k] - torch_grads[k]).max() / np.abs(torch_grads[k]).max())
            for k in grads
        )
        hc = torch_state if isinstance(torch_state, tuple) else (torch_state,)
        torch_state_np = np.stack([s.detach().numpy() for s in hc], axis=1)  # (L, S, B, H)
        state_err = float(np.abs(state - torch_state_np).max())
        loss_err = abs(loss - torch_loss.item())
        good = loss_err <= 1e-4 and state_err <= 1e-4 and grad_err <= 1e-3
        ok = ok and good
        print(
            f"  chunk {chunk + 1}: loss charrnn {loss:.6f} torch {torch_loss.item():.6f} "
            f"|diff| {loss_err:.1e} (<= 1e-4); state_T max |diff| {state_err:.1e} (<= 1e-4); "
            f"gradients max |diff| / max |grad| {grad_err:.1e} (<= 1e-3): "
            f"{'OK' if good else 'FAIL'}"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="rnn")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--workers", type=int, default=1, help="charrnn's data-parallel workers (and the GEMMs')"
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="a table over 1, 2, 4, ... workers up to the usable cores (the first --hidden)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=2.0)
    parser.add_argument("--no-peer", action="store_true", help="charrnn alone, even with torch")
    parser.add_argument("--no-min-char-rnn", action="store_true")
    parser.add_argument(
        "--check-peer",
        action="store_true",
        help="only check that the PyTorch model computes charrnn's loss, state and gradients",
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, opts = args.worker[0], json.loads(args.worker[1])
        _bench.serve(WORKERS[kind](opts))
        return

    _bench.set_threads(args.threads)
    if args.check_peer:
        if not _bench.torch_available():
            raise SystemExit("--check-peer needs torch")
        print(f"BLAS: {_bench.blas_info()}")
        ok = True
        for H in args.hidden:
            ok &= check_peer(args.cell, args.layers, H, args.batch, args.seq_len, args.threads)
        sys.exit(0 if ok else 1)

    peak = _bench.gemm_peak(args.threads)
    print(
        f"cell {args.cell}, L {args.layers}; threads {args.threads}; float32 GEMM peak "
        f"{peak['square_2048']:.0f} GFLOP/s (2048^3), RNN-shaped (64x512)@(512x512) "
        f"{peak['rnn_64x512x512']:.0f} GFLOP/s"
    )
    print(f"BLAS of the GEMM peak and the charrnn and GEMM-only workers: {_bench.blas_info()}")
    peer = not args.no_peer and _bench.torch_available()
    if not peer:
        print("torch is not importable (or --no-peer): charrnn figures alone")
    if args.scaling:
        scaling(args, peer)
        return
    kinds = ["charrnn", "torch"] if peer else ["charrnn"]
    kinds += ["gemms"]  # the ceiling: a step's matrix products alone
    V = _bench.corpus_ids()[1]
    G = {"rnn": 1, "lstm": 4, "gru": 3}[args.cell]
    L = args.layers
    header = (
        f"{'H':>5} {'B':>4} {'T':>4} {'charrnn c/s':>12} {'torch c/s':>10} {'ratio':>6} "
        f"{'GFLOP/s':>8} {'of peak':>8} {'RSS MB':>7} {'torch RSS':>9} "
        f"{'GEMMs c/s':>10} {'ceiling':>7} {'of peak':>8}"
    )
    print(header)
    infos = {}
    for H in args.hidden:
        common = {
            "hidden": H,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "threads": args.threads,
            "cell": args.cell,
            "layers": L,
            "workers": args.workers,
        }
        med, _, rss, infos[H] = compare(
            kinds, {"common": common}, args.rounds, args.round_seconds, args.threads
        )
        flops = 6 * args.seq_len * args.batch * (G * H * H * (2 * L - 1) + H * V)
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
    for kind in INFO_KINDS:
        counts = [
            f"H {H} {i[kind]['params']:,}"
            + (f" ({i[kind]['matched']:,} without redundant bias_hh)" if kind == "torch" else "")
            for H, i in infos.items()
            if kind in i
        ]
        if counts:
            print(f"{kind} parameters: " + ", ".join(counts))
    for kind in INFO_KINDS:
        if infos and kind in next(iter(infos.values())):
            print(f"{kind} worker BLAS: {next(iter(infos.values()))[kind]['blas']}")
    if args.no_min_char_rnn:
        return
    if args.cell != "rnn" or L != 1:
        print("min-char-rnn comparison skipped: its algorithm is the 1-layer vanilla rnn")
        return
    opts = {
        "hidden": 100,
        "batch": 1,
        "seq_len": 25,
        "optimizer": "adagrad",
        "lr": 0.1,
        "threads": args.threads,
    }
    med, _, _, _ = compare(
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
