"use strict";
// The forward pass and sampler of a charrnn model in the browser: the JavaScript twin of
// charrnn.model.CharRNN.step and charrnn.sample. The weights are PyTorch's layout
// (charrnn/layouts.py, to_torch): per layer weight_ih (G*H, In), weight_hh (G*H, H), bias_ih
// and bias_hh (G*H,), gate blocks LSTM i, f, g, o and GRU r, z, n; head.weight (V, H).
// Shapes: H hidden units, V symbols, L layers, G gate blocks. Activations are JS numbers
// (float64); the weights are float32 arrays decoded from the page's float16 or float32 bytes.

const MODEL = JSON.parse(document.getElementById("model").textContent);
const { cell, layers: L, hidden_size: H, vocab_size: V } = MODEL.config;
const G = { rnn: 1, lstm: 4, gru: 3 }[cell];
const S = cell === "lstm" ? 2 : 1; // state per layer: h, and c for the LSTM
const SYMBOLS = MODEL.vocab.symbols;
const INDEX = new Map(SYMBOLS.map((s, i) => [s, i]));

function float16Table() {
  // The float32 value of every float16 bit pattern, (65536,).
  const table = new Float32Array(65536);
  for (let bits = 0; bits < 65536; bits++) {
    const sign = bits & 0x8000 ? -1 : 1;
    const exponent = (bits >> 10) & 0x1f;
    const fraction = bits & 0x3ff;
    if (exponent === 0) table[bits] = sign * fraction * 2 ** -24; // subnormal
    else if (exponent === 31) table[bits] = fraction ? NaN : sign * Infinity;
    else table[bits] = sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
  }
  return table;
}

function decodeWeights() {
  // Every tensor by name, as a Float32Array view of one decoded buffer.
  const bytes = Uint8Array.from(atob(MODEL.weights), (ch) => ch.charCodeAt(0));
  let values;
  if (MODEL.dtype === "float16") {
    const half = new Uint16Array(bytes.buffer);
    const table = float16Table();
    values = new Float32Array(half.length);
    for (let i = 0; i < half.length; i++) values[i] = table[half[i]];
  } else {
    values = new Float32Array(bytes.buffer);
  }
  const tensors = {};
  for (const [name, offset, shape] of MODEL.tensors) {
    const size = shape.reduce((a, b) => a * b, 1);
    tensors[name] = values.subarray(offset, offset + size);
  }
  return tensors;
}

const W = decodeWeights();

function matvec(matrix, rows, cols, x, bias, out) {
  // out = matrix x + bias: matrix (rows, cols) row-major, x (cols,), out (rows,). Eight rows
  // at a time share each load of x: in V8 about 2.5 times as fast as one row at a time.
  let r = 0;
  for (; r + 7 < rows; r += 8) {
    const b0 = r * cols, b1 = b0 + cols, b2 = b1 + cols, b3 = b2 + cols;
    const b4 = b3 + cols, b5 = b4 + cols, b6 = b5 + cols, b7 = b6 + cols;
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (let c = 0; c < cols; c++) {
      const xc = x[c];
      a0 += matrix[b0 + c] * xc;
      a1 += matrix[b1 + c] * xc;
      a2 += matrix[b2 + c] * xc;
      a3 += matrix[b3 + c] * xc;
      a4 += matrix[b4 + c] * xc;
      a5 += matrix[b5 + c] * xc;
      a6 += matrix[b6 + c] * xc;
      a7 += matrix[b7 + c] * xc;
    }
    out[r] = bias[r] + a0;
    out[r + 1] = bias[r + 1] + a1;
    out[r + 2] = bias[r + 2] + a2;
    out[r + 3] = bias[r + 3] + a3;
    out[r + 4] = bias[r + 4] + a4;
    out[r + 5] = bias[r + 5] + a5;
    out[r + 6] = bias[r + 6] + a6;
    out[r + 7] = bias[r + 7] + a7;
  }
  for (; r < rows; r++) {
    let a = 0;
    for (let c = 0; c < cols; c++) a += matrix[r * cols + c] * x[c];
    out[r] = bias[r] + a;
  }
}

const sigmoid = (a) => 1 / (1 + Math.exp(-a));

class Model {
  // The recurrent state of one stream, advanced one symbol at a time.
  constructor() {
    this.state = Array.from({ length: L }, () => Array.from({ length: S }, () => new Float64Array(H)));
    this.xw = new Float64Array(G * H); // x W_ih^T + b_ih, (G*H,)
    this.gh = new Float64Array(G * H); // h W_hh^T + b_hh, (G*H,)
    this.logits = new Float64Array(V); // (V,)
  }

  push(id) {
    // One step of every layer, bottom to top, then the logits of the top h.
    const { xw, gh } = this;
    let below = null; // the h of the layer below, (H,)
    for (let l = 0; l < L; l++) {
      const ih = W[`rnn.weight_ih_l${l}`], bih = W[`rnn.bias_ih_l${l}`];
      if (l === 0) {
        // x is one-hot: x W_ih^T is column `id` of W_ih (G*H, V)
        for (let j = 0; j < G * H; j++) xw[j] = ih[j * V + id] + bih[j];
      } else {
        matvec(ih, G * H, H, below, bih, xw); // (G*H,)
      }
      const [h, c] = this.state[l]; // (H,) each
      matvec(W[`rnn.weight_hh_l${l}`], G * H, H, h, W[`rnn.bias_hh_l${l}`], gh); // (G*H,)
      if (cell === "rnn") {
        for (let j = 0; j < H; j++) h[j] = Math.tanh(xw[j] + gh[j]); // h' = tanh(a)
      } else if (cell === "lstm") {
        for (let j = 0; j < H; j++) {
          const i = sigmoid(xw[j] + gh[j]);
          const f = sigmoid(xw[H + j] + gh[H + j]);
          const g = Math.tanh(xw[2 * H + j] + gh[2 * H + j]);
          const o = sigmoid(xw[3 * H + j] + gh[3 * H + j]);
          c[j] = f * c[j] + i * g; // c' = f c + i g
          h[j] = o * Math.tanh(c[j]); // h' = o tanh(c')
        }
      } else {
        for (let j = 0; j < H; j++) {
          const r = sigmoid(xw[j] + gh[j]);
          const z = sigmoid(xw[H + j] + gh[H + j]);
          const n = Math.tanh(xw[2 * H + j] + r * gh[2 * H + j]); // gh_n holds b_hn
          h[j] = n + z * (h[j] - n); // h' = (1 - z) n + z h
        }
      }
      below = h;
    }
    matvec(W["head.weight"], V, H, below, W["head.bias"], this.logits); // (V,)
  }
}

function random32(seed) {
  // A seeded generator of floats in [0, 1) (mulberry32 over a hash of the seed's text).
  let a = 0x9e3779b9;
  for (const ch of String(seed)) a = Math.imul(a ^ ch.charCodeAt(0), 0x85ebca6b) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SCORES = new Float64Array(V); // pick's work space: no allocation a symbol
const SORTED = new Float64Array(V); // top-k's copy of the scores, sorted

function pick(logits, temperature, topK, random) {
  // One id from logits (V,): the argmax at temperature 0 (the first, as np.argmax), else a
  // draw from softmax(logits / temperature) over the top-k (ties with the k-th kept).
  if (temperature === 0) {
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
    return best;
  }
  const scores = SCORES; // (V,)
  for (let v = 0; v < V; v++) scores[v] = logits[v] / temperature;
  if (topK > 0 && topK < V) {
    SORTED.set(scores);
    const kth = SORTED.sort()[V - topK];
    for (let v = 0; v < V; v++) if (scores[v] < kth) scores[v] = -Infinity;
  }
  let max = -Infinity;
  for (let v = 0; v < V; v++) max = Math.max(max, scores[v]);
  let total = 0;
  for (let v = 0; v < V; v++) total += scores[v] = Math.exp(scores[v] - max);
  let u = random() * total;
  for (let v = 0; v < V; v++) if ((u -= scores[v]) < 0) return v;
  return V - 1;
}

function encode(text) {
  // The prime's ids, split into symbols as the model's vocabulary was; throws on a symbol
  // the model never saw.
  const pieces = MODEL.vocab.unit === "codepoint" ? Array.from(text)
    : Array.from(new Intl.Segmenter("en", { granularity: "grapheme" }).segment(text), (s) => s.segment);
  const unknown = pieces.filter((s) => !INDEX.has(s));
  if (unknown.length) throw new Error(`the prime has symbols the model never saw: ${[...new Set(unknown)].join(" ")}`);
  return pieces.map((s) => INDEX.get(s));
}

const $ = (id) => document.getElementById(id);
const output = $("output"), status = $("status");
let running = null; // the generation under way, stopped when a new one starts
const nextTask = () => new Promise((resolve) => {
  const channel = new MessageChannel(); // a task without setTimeout's 4 ms clamp
  channel.port1.onmessage = resolve;
  channel.port2.postMessage(null);
});

async function generate() {
  const settings = {
    prime: $("prime").value,
    temperature: Number($("temperature").value),
    topK: Math.floor(Number($("top_k").value)),
    length: Math.floor(Number($("length").value)),
    seed: $("seed").value,
  };
  if (!(settings.temperature >= 0) || !(settings.length >= 0) || !(settings.topK >= 0)) {
    status.textContent = "temperature, top-k and length must be numbers >= 0";
    return;
  }
  const run = (running = {});
  const random = random32(settings.seed);
  let prime;
  try {
    prime = encode(settings.prime);
  } catch (error) {
    status.textContent = error.message;
    return;
  }
  // No prime: start from a newline when the vocabulary has one, else from a random symbol;
  // the start symbol is not written (as charrnn sample).
  if (!prime.length) prime = [INDEX.has("\n") ? INDEX.get("\n") : Math.floor(random() * V)];
  output.textContent = settings.prime;
  status.textContent = "generating";
  delete output.dataset.done;
  const start = performance.now();
  const model = new Model();
  for (const id of prime) model.push(id);
  let made = 0;
  while (made < settings.length) {
    let piece = "";
    const sliceEnd = performance.now() + 30; // stream: show the text every 30 ms
    while (made < settings.length && performance.now() < sliceEnd) {
      const id = pick(model.logits, settings.temperature, settings.topK, random);
      piece += SYMBOLS[id];
      model.push(id);
      made++;
    }
    output.append(piece);
    await nextTask();
    if (running !== run) return;
  }
  const seconds = (performance.now() - start) / 1000;
  const rate = made / Math.max(seconds, 1e-9);
  status.textContent = `${made} symbols in ${seconds.toFixed(2)} s (${Math.round(rate)} symbols/s)`;
  status.dataset.symbolsPerSecond = rate.toFixed(1);
  output.dataset.done = "1";
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  generate();
});

// A fragment such as #prime=ROMEO%3A&temperature=0&length=300&seed=1 fills the form and
// generates at once, so a link reproduces a sample.
const fragment = new URLSearchParams(location.hash.slice(1));
for (const key of ["prime", "temperature", "top_k", "length", "seed"]) {
  if (fragment.has(key)) $(key).value = fragment.get(key);
}
if ([...fragment.keys()].length > 0) generate();
