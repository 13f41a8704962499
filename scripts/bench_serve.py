"""Served generation against `charrnn sample --num N`: the total symbols per second of a
`charrnn serve` process under N concurrent streaming clients (a load generator over the
loopback), against one process generating N samples side by side with the same settings;
and each request's time to its first symbol (p50, p99).

Rounds alternate between the two so both see the same machine; printed are medians, the
ratio, and the BLAS both ran.

    python scripts/bench_serve.py                      # the shipped english model, 16 clients
    python scripts/bench_serve.py --run runs/mine --clients 32
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import _bench

PROMPT = "The "


def sample_worker(opts: dict) -> dict:
    from charrnn import generate_many, load
    from charrnn.parallel import worker_count

    run = load(opts["run"])

    def run_once(num: int, length: int) -> dict:
        start, cpu = time.perf_counter(), time.process_time()
        texts = generate_many(
            run.model,
            run.vocab,
            num,
            PROMPT,
            length,
            temperature=opts["temperature"],
            seed=0,
            workers=worker_count(None, num),  # as `charrnn sample --num` does
        )
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert sum(map(len, texts)) == num * length
        return {"symbols_per_sec": num * length / elapsed, "cpu_s": cpu}

    return {"run": run_once, "info": lambda: {"blas": _bench.blas_info()}}


WORKERS = {"sample": sample_worker}


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(_bench.REPO))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    limits = ["--max-length", str(args.length), "--streams", str(max(64, args.clients))]
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "serve", args.run, "--port", "0", *limits],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    banner = proc.stdout.readline()
    return proc, int(banner.split("http://")[1].split("/")[0].rpartition(":")[2])


def one_request(conn: http.client.HTTPConnection, args: argparse.Namespace) -> tuple[float, int]:
    """A streamed completion on a kept-alive connection, as API clients make them: (seconds
    to its first symbol, symbols received)."""
    body = {"prompt": PROMPT, "max_tokens": args.length, "temperature": args.temperature}
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps({**body, "stream": True}))
    response = conn.getresponse()
    first, received = None, 0
    for line in response:
        if line.startswith(b"data: {"):
            received += len(json.loads(line[6:])["choices"][0]["text"])
            if first is None and received:
                first = time.perf_counter() - start
    return first, received


def cpu_seconds(pid: int | None = None) -> float:
    """User and system CPU time of a process (this one by default), from /proc."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_round(port: int, args: argparse.Namespace) -> tuple[float, list[float]]:
    """N clients, each making `--requests` completions back to back: (symbols/s, first-symbol
    times)."""
    firsts: list[float] = []
    totals = [0] * args.clients

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for _ in range(args.requests):
            first, received = one_request(conn, args)
            firsts.append(first)
            totals[i] += received
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    assert sum(totals) == args.clients * args.requests * args.length, totals
    return sum(totals) / elapsed, firsts


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(_bench.REPO / "charrnn" / "data" / "english.npz"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--length", type=int, default=500, help="symbols a request (500)")
    parser.add_argument("--requests", type=int, default=4, help="per client per round (4)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads of both (1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _bench.serve(WORKERS[args.worker[0]](json.loads(args.worker[1])))
        return
    opts = {"run": args.run, "temperature": args.temperature}
    worker = _bench.Worker(__file__, "sample", opts, args.threads)
    server, port = start_server(args)
    print(
        f"{args.run}: {args.clients} streams, {args.length} symbols each after {PROMPT!r}, "
        f"temperature {args.temperature}, {args.threads} BLAS thread(s) each process"
    )
    print(f"BLAS: {worker.call(op='info')['blas']}")
    worker.call(op="run", num=args.clients, length=50)  # warm-up
    warm = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    one_request(warm, args)
    warm.close()
    sampled, served, firsts = [], [], []
    cpu = {"sample": 0.0, "server": 0.0, "clients": 0.0}
    try:
        for _ in range(args.rounds):
            result = worker.call(op="run", num=args.clients, length=args.length * args.requests)
            sampled.append(result["symbols_per_sec"])
            cpu["sample"] += result["cpu_s"]
            before = cpu_seconds(server.pid), cpu_seconds()
            rate, times = server_round(port, args)
            cpu["server"] += cpu_seconds(server.pid) - before[0]
            cpu["clients"] += cpu_seconds() - before[1]
            served.append(rate)
            firsts += times
    finally:
        server.terminate()
        server.wait()
        worker.close()
    s, v = _bench.median(sampled), _bench.median(served)
    print(f"sample --num {args.clients}: {s:,.0f} symbols/s (median of {args.rounds})")
    print(f"serve, {args.clients} clients: {v:,.0f} symbols/s (median of {args.rounds})")
    print(f"ratio served / sample: {v / s:.2f}")
    symbols = args.rounds * args.clients * args.requests * args.length / 1000
    print(
        "CPU seconds per 1,000 symbols: "
        + ", ".join(f"{k} {v / symbols * 1000:.1f} ms" for k, v in cpu.items())
    )
    p50, p99 = (percentile(firsts, q) * 1000 for q in (0.5, 0.99))
    print(f"time to first symbol over {len(firsts)} requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
