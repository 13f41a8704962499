"""Export: how long each format takes to write, what the page's float16 weights cost in
bits/char, how fast the page writes in headless Chromium, and onnxruntime's CPU speed on the
exported model beside charrnn's own sampler and training forward, side by side in one run.
With PyTorch importable, also the README's safetensors loading checked against NumPy.

    python scripts/bench_export.py                      # the shipped 2x256 LSTM (english)
    python scripts/bench_export.py --run runs/shakes    # a float32 run: float16's real cost

The page is timed over the DevTools protocol (--remote-debugging-pipe), not --dump-dom: under
--virtual-time-budget the page's clock is virtual and would not see the work.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _bench


def timed(fn, rounds: int) -> float:
    """The median seconds of `rounds` calls after one warm-up."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return _bench.median(times)


def export_times(run, out: Path) -> None:
    import charrnn

    print("\nexport (in-process median of 3 after imports; the CLI once, its imports included)")
    for fmt in ("onnx", "safetensors", "html"):
        path = out / f"model.{fmt}"
        seconds = timed(lambda fmt=fmt, path=path: charrnn.export(run, path, fmt), 3)
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "charrnn", "export", str(run.path), "-o", str(path)]
        subprocess.run(cmd, check=True, capture_output=True, env=os.environ)
        cli = time.perf_counter() - start
        size = path.stat().st_size
        print(f"  {fmt:<12} {seconds:6.3f} s   charrnn export {cli:5.2f} s   {size / 1e6:6.2f} MB")


def float16_cost(run) -> None:
    """Validation bits/char of the run's weights and of the page's float16 weights."""
    import numpy as np

    import charrnn
    from charrnn.corpus import split_ids

    text = _bench.SHAKESPEARE.read_text(encoding="utf-8")
    unknown = run.vocab.unknown(text)
    if unknown:
        print(f"\nfloat16 cost: skipped, the run's vocabulary lacks {sorted(unknown)[:5]}")
        return
    _, val = split_ids(run.vocab.encode(text), 0.1)
    half = {k: v.astype(np.float16).astype(np.float32) for k, v in run.model.params.items()}
    stored = run.config["model"]["dtype"]
    print(f"\nfloat16 page weights on tinyshakespeare validation ({len(val):,} symbols, ", end="")
    print(f"checkpoint stored as {stored})")
    full_nats = charrnn.evaluate(run.model, val)
    half_nats = charrnn.evaluate(charrnn.CharRNN.from_params(half, run.model.cell), val)
    for name, nats in (("as trained", full_nats), ("float16", half_nats)):
        print(f"  {name:<12} {nats:.6f} nats/char  {nats / math.log(2):.6f} bits/char")
    print(f"  cost         {(half_nats - full_nats) / math.log(2):+.6f} bits/char")


class DevTools:
    """Headless Chromium driven over --remote-debugging-pipe: JSON messages ending in NUL."""

    def __init__(self, profile: Path) -> None:
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def as_fds_3_and_4() -> None:  # the pipe's fixed descriptors, whatever numbers we have
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 5) for fd in (to_browser, from_browser)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        flags += ["--disable-background-networking", "--disable-component-update"]
        flags += [f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(
            [_browser(), *flags],
            close_fds=False,
            preexec_fn=as_fds_3_and_4,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser)
        os.close(from_browser)
        self.last, self.buffer, self.session = 0, b"", None

    def send(self, method: str, **params):
        self.last += 1
        message = {"id": self.last, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self.buffer:
                self.buffer += os.read(self._from_browser, 1 << 20)
            line, self.buffer = self.buffer.split(b"\0", 1)
            reply = json.loads(line)
            if reply.get("id") == self.last:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        attached = self.send("Target.attachToTarget", targetId=target, flatten=True)
        self.session = attached["sessionId"]
        self.send("Page.navigate", url=url)
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        while not self.value(loaded):
            time.sleep(0.05)

    def value(self, expression: str):
        """The value of a JavaScript expression in the page (a promise's, once it settles)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"]["text"])
        return result["result"].get("value")

    def close(self) -> None:
        self.session = None
        self.send("Browser.close")
        self.proc.wait()


def _browser() -> str:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"


GENERATE = """new Promise(resolve => {
  document.getElementById("length").value = %d;
  document.getElementById("temperature").value = 1;
  document.getElementById("generate").click();
  const done = () => document.getElementById("output").dataset.done
    ? resolve(Number(document.getElementById("status").dataset.symbolsPerSecond))
    : setTimeout(done, 20);
  setTimeout(done, 20);
})"""


def page_speed(run, out: Path, length: int, rounds: int) -> None:
    """Symbols/s of the page in headless Chromium, charrnn's one-stream sampler beside it, and
    where the page's time goes (a CPU profile of one generation)."""
    import charrnn

    page = charrnn.export(run, out / "page.html")
    print(f"\npage: {page.stat().st_size / 1e6:.2f} MB; {length:,} symbols a round, temperature 1")
    browser = DevTools(out / "profile")
    try:
        browser.open(page.as_uri())
        browser.value(GENERATE % 500)  # warm-up: the JIT compiles the loops
        page_rates, numpy_rates = [], []
        for _ in range(rounds):
            page_rates.append(browser.value(GENERATE % length))
            start = time.perf_counter()
            text = "".join(charrnn.generate(run.model, run.vocab, length=length, seed=1))
            numpy_rates.append(len(text) / (time.perf_counter() - start))
        browser.send("Profiler.enable")
        browser.send("Profiler.start")
        browser.value(GENERATE % length)
        profile = browser.send("Profiler.stop")["profile"]
    finally:
        browser.close()
    page_rate, numpy_rate = _bench.median(page_rates), _bench.median(numpy_rates)
    print(f"  page in headless Chromium  {page_rate:8,.0f} symbols/s (median of {rounds})")
    print(f"  charrnn sample (NumPy)     {numpy_rate:8,.0f} symbols/s, ratio page/NumPy ", end="")
    print(f"{page_rate / numpy_rate:.2f}")
    hits: dict[str, int] = {}
    for node in profile["nodes"]:
        name = node["callFrame"]["functionName"] or "(anonymous)"
        hits[name] = hits.get(name, 0) + node.get("hitCount", 0)
    total = sum(hits.values()) or 1
    top = sorted(hits.items(), key=lambda kv: -kv[1])[:5]
    print("  profile, self time: " + ", ".join(f"{k} {v / total:.0%}" for k, v in top))


def onnx_speed(run, out: Path, rounds: int, threads: int) -> None:
    """onnxruntime on the exported model beside charrnn: sampling one symbol at a time for
    1 and 64 streams (the same draws), and a (T 100, B 64) chunk's forward."""
    import numpy as np
    import onnxruntime as ort

    import charrnn
    from charrnn.sample import Sampler, generate_ids

    path = charrnn.export(run, out / "model.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle between runs
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    model, vocab = run.model, run.vocab

    def charrnn_sampling(num: int, length: int) -> None:
        for _ in generate_ids(model, vocab, "", length, num, Sampler(seed=1)):
            pass

    def onnx_sampling(num: int, length: int) -> None:
        sampler, state = Sampler(seed=1), model.zero_state(num)
        ids = np.full((1, num), vocab.index.get("\n", 0), np.int64)
        for _ in range(length):
            logits, state = session.run(None, {"ids": ids, "state": state})
            ids[0] = sampler.draw(logits[0])

    rng = np.random.default_rng(0)
    chunk = rng.integers(0, model.vocab_size, (64, 101))  # (B, T+1)
    state0 = model.zero_state(64)

    def charrnn_forward() -> None:
        model.loss(chunk[:, :-1], chunk[:, 1:], state0)

    def onnx_forward() -> None:
        session.run(None, {"ids": np.ascontiguousarray(chunk[:, :-1].T), "state": state0})

    cases = [
        (
            "sampling, 1 stream",
            1 * 400,
            lambda: charrnn_sampling(1, 400),
            lambda: onnx_sampling(1, 400),
        ),
        (
            "sampling, 64 streams",
            64 * 100,
            lambda: charrnn_sampling(64, 100),
            lambda: onnx_sampling(64, 100),
        ),
        ("forward, T 100 x B 64", 6400, charrnn_forward, onnx_forward),
    ]
    print(f"\nonnxruntime {ort.__version__} CPU against charrnn, {threads} threads each, chars/s,")
    print(f"median of {rounds} alternating rounds (charrnn's forward includes its softmax loss)")
    print(f"  {'what':<24} {'charrnn':>10} {'onnxruntime':>12} {'ratio':>6}")
    for name, chars, ours, theirs in cases:
        ours(), theirs()
        rates = {"charrnn": [], "onnx": []}
        for r in range(rounds):
            pair = [("charrnn", ours), ("onnx", theirs)]
            for key, fn in pair if r % 2 == 0 else pair[::-1]:
                start = time.perf_counter()
                fn()
                rates[key].append(chars / (time.perf_counter() - start))
        a, b = _bench.median(rates["charrnn"]), _bench.median(rates["onnx"])
        print(f"  {name:<24} {a:>10,.0f} {b:>12,.0f} {b / a:>6.2f}")


def torch_check(run, out: Path) -> None:
    """The README's way of loading the safetensors export into torch.nn modules, its logits
    against the NumPy step over 1,000 steps with the state carried, every cell and depth."""
    import numpy as np
    import torch
    from safetensors.torch import load_file

    import charrnn
    from charrnn.checkpoint import Run

    def torch_modules(path: Path, config: dict):
        V, H = config["vocab_size"], config["hidden_size"]
        rnn = getattr(torch.nn, config["cell"].upper())(V, H, config["layers"])
        head = torch.nn.Linear(H, V)
        torch.nn.ModuleDict({"rnn": rnn, "head": head}).load_state_dict(load_file(path))
        return rnn, head

    def worst(run: Run, B: int = 2, T: int = 1000, dtype=np.float32) -> tuple[float, float]:
        """Max |logit diff| and max |logit| of torch against NumPy, both in `dtype`."""
        path = charrnn.export(run, out / "model.safetensors")
        m = run.model
        config = {"cell": m.cell, "layers": m.layers, "hidden_size": m.hidden_size}
        rnn, head = torch_modules(path, {**config, "vocab_size": m.vocab_size})
        if dtype == np.float64:
            rnn, head = rnn.double(), head.double()
            params = {k: v.astype(np.float64) for k, v in m.params.items()}
            m = charrnn.CharRNN.from_params(params, m.cell)
        ids = np.random.default_rng(0).integers(0, m.vocab_size, (T, B))
        state, expected = m.zero_state(B), []
        for t in range(T):
            logits, state = m.step(ids[t], state)
            expected.append(logits)
        got, carried = [], None
        with torch.no_grad():
            for start in range(0, T, 250):
                x = torch.nn.functional.one_hot(
                    torch.as_tensor(ids[start : start + 250]), m.vocab_size
                )
                y, carried = rnn(x.to(head.weight.dtype), carried)  # (250, B, H)
                got.append(head(y).numpy())
        expected = np.array(expected)
        return float(np.abs(np.concatenate(got) - expected).max()), float(np.abs(expected).max())

    print(
        f"\nPyTorch {torch.__version__}: safetensors loaded as the README does, max |logit diff| "
    )
    print("against NumPy over 1,000 steps, state carried (limit 1e-5)")
    name = f"{run.model.cell} {run.model.layers} x {run.model.hidden_size}"
    results = {
        f"{name} (the run)": worst(run),
        f"{name} (the run, float64)": worst(run, dtype=np.float64),
    }
    for cell in ("rnn", "lstm", "gru"):
        for layers in (1, 2, 3):
            model = charrnn.CharRNN(run.model.vocab_size, 64, seed=layers, cell=cell, layers=layers)
            # logits of a trained model's size; W_hh kept, or the vanilla RNN turns chaotic
            scaled = {k: v if k.startswith("W_hh") else 3 * v for k, v in model.params.items()}
            fake = Run(charrnn.CharRNN.from_params(scaled, cell), run.vocab, {}, out / "r.npz")
            results[f"{cell} {layers} x 64 (random, x3)"] = worst(fake)
    for name, (diff, largest) in results.items():
        verdict = "ok" if diff <= 1e-5 else "OVER 1e-5"
        print(f"  {name:<32} {diff:.2e}  {verdict:<9} (largest |logit| {largest:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(_bench.REPO / "charrnn" / "data" / "english.npz"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="BLAS and onnxruntime threads")
    parser.add_argument("--length", type=int, default=4000, help="symbols the page writes a round")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--no-float16", action="store_true", help="skip the float16 cost")
    args = parser.parse_args()
    _bench.set_threads(args.threads)
    import charrnn

    run = charrnn.load(args.run)
    m = run.model
    print(f"run {args.run}: {m.cell} {m.layers} x {m.hidden_size}, V {m.vocab_size}")
    load = os.getloadavg()[0]
    print(f"BLAS {_bench.blas_info()}; load average {load:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        export_times(run, out)
        if not args.no_float16:
            float16_cost(run)
        if not args.no_browser:
            page_speed(run, out, args.length, args.rounds)
        onnx_speed(run, out, args.rounds, args.threads)
        if _bench.torch_available():
            torch_check(run, out)
        else:
            print("\nPyTorch not importable: the safetensors check against torch is skipped")


if __name__ == "__main__":
    main()
