"""Where a data-parallel training step goes: CPU time (one BLAS thread) of one worker's forward
and backward over its slice of the streams, and of what runs once a step on one thread beside
the workers (the dropout masks, the sum of the workers' gradients, the norm and clip, Adam).

    python scripts/profile_step.py                       # the ten-minute default, 2 workers
    python scripts/profile_step.py --cell gru --layers 1 --seq-len 100 --workers 4
"""

from __future__ import annotations

import argparse
import time

import _bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="lstm", choices=("rnn", "lstm", "gru"))
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--weight-drop", type=float, default=0.2)
    args = parser.parse_args()
    _bench.set_threads(1)

    import numpy as np

    from charrnn.model import CharRNN, dropout_keep
    from charrnn.optim import clip_grad_norm, make_optimizer
    from charrnn.parallel import stream_slices

    ids, V = _bench.corpus_ids()
    L, H, T, B = args.layers, args.hidden, args.seq_len, args.batch
    model = CharRNN(V, H, cell=args.cell, layers=L)
    optimizer = make_optimizer("adam", model.params)
    b = stream_slices(B, args.workers)[0].stop  # the first (largest) slice
    x, y = ids[: b * T].reshape(b, T), ids[1 : b * T + 1].reshape(b, T)
    state = model.zero_state(b)
    grads = model.loss_and_grads(x, y, state)[1]

    def cpu_ms(work, repeats: int = 10) -> float:
        work()
        start = time.process_time()
        for _ in range(repeats):
            work()
        return (time.process_time() - start) / repeats * 1e3

    def masks() -> None:
        rng = np.random.default_rng(1)
        dropout_keep(args.dropout, (L * T * B, H), rng, model.dtype)
        dropout_keep(args.weight_drop, (L * H, model.gates * H), rng, model.dtype)

    def grad_sum() -> None:
        for _ in range(args.workers - 1):
            for g in grads.values():
                g += g

    parts = {
        f"forward and backward of {b} streams": cpu_ms(lambda: model.loss_and_grads(x, y, state)),
        "dropout masks": cpu_ms(masks),
        f"sum of {args.workers} workers' gradients": cpu_ms(grad_sum),
        "norm and clip": cpu_ms(lambda: clip_grad_norm(grads, 5.0)),
        "adam": cpu_ms(lambda: optimizer.step(model.params, grads, 1e-6)),
    }
    once = sum(list(parts.values())[1:])
    print(f"BLAS: {_bench.blas_info()}")
    print(f"{args.cell} L {L} H {H} T {T} B {B}, {args.workers} workers; CPU ms a step")
    for name, ms in parts.items():
        print(f"  {name:<40} {ms:8.2f}")
    share = once / (once + parts[f"forward and backward of {b} streams"])
    print(
        f"run once a step on one thread: {share:.1%}; Amdahl's bound on {args.workers} cores: "
        f"{1 / (share + (1 - share) / args.workers):.2f}x"
    )


if __name__ == "__main__":
    main()
