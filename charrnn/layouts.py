"""The one mapping from charrnn's parameter layout to foreign ones: PyTorch's nn.RNN/LSTM/GRU
with nn.Linear (names, transposes, split biases) and ONNX's RNN/LSTM/GRU operators (gate
orders, W/R/B tensors). Every exporter goes through here, so the formats cannot drift apart.

charrnn, per layer (suffix s = "", "2", ...): W_xh{s} (In, G*H), W_hh{s} (H, G*H), b_h{s}
(G*H,) the sum of the input and hidden biases, and for the GRU b_hn{s} (H,), the n block of the
hidden bias that sits inside r's product; then W_hy (H, V), b_y (V,). In is V for the first
layer (one-hot input) and H above. Gate blocks: LSTM i, f, g, o; GRU r, z, n.

    torch   rnn.weight_ih_l{k} = W_xh.T (G*H, In)    gates as charrnn's
            rnn.weight_hh_l{k} = W_hh.T (G*H, H)
            rnn.bias_ih_l{k}   = b_h                 rnn.bias_hh_l{k} = 0 (GRU: 0, 0, b_hn)
            head.weight = W_hy.T (V, H)              head.bias = b_y
    onnx    W = W_xh.T (1, G*H, In), R = W_hh.T (1, G*H, H), B = [Wb, Rb] (1, 2*G*H)
            gates LSTM i, o, f, c (= g); GRU z, r, h (= n) with linear_before_reset=1
"""

from __future__ import annotations

import numpy as np

from charrnn.model import suffix

# The gate blocks of each layout, named as charrnn names them (the ONNX LSTM's c is g, the
# ONNX GRU's h is n).
CHARRNN_GATES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
ONNX_GATES = {"rnn": ("h",), "lstm": ("i", "o", "f", "g"), "gru": ("z", "r", "n")}
ONNX_OPS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _reorder(array: np.ndarray, cell: str, order: tuple[str, ...]) -> np.ndarray:
    """The gate blocks along axis 0 of array (G*H, ...), from charrnn's order to `order`."""
    blocks = dict(zip(CHARRNN_GATES[cell], np.split(array, len(order)), strict=True))
    return np.concatenate([blocks[gate] for gate in order])


def _restore(array: np.ndarray, cell: str, order: tuple[str, ...]) -> np.ndarray:
    """The inverse of _reorder: blocks in `order` along axis 0 back to charrnn's order."""
    blocks = dict(zip(order, np.split(array, len(order)), strict=True))
    return np.concatenate([blocks[gate] for gate in CHARRNN_GATES[cell]])


def hidden_bias(params: dict[str, np.ndarray], cell: str, layer: int) -> np.ndarray:
    """The recurrent-side bias of a foreign layout, (G*H,): zero, but for the GRU its n block
    is b_hn (the only hidden bias that is not redundant beside b_h)."""
    s = suffix(layer)
    bias = np.zeros_like(params[f"b_h{s}"])
    if cell == "gru":
        H = len(params[f"b_hn{s}"])
        bias[2 * H :] = params[f"b_hn{s}"]
    return bias


def to_torch(params: dict[str, np.ndarray], cell: str, layers: int) -> dict[str, np.ndarray]:
    """The state_dict of a module with `rnn` (nn.RNN/LSTM/GRU on one-hot input) and `head`
    (nn.Linear), as contiguous NumPy arrays."""
    out = {}
    for layer in range(layers):
        s = suffix(layer)
        out[f"rnn.weight_ih_l{layer}"] = params[f"W_xh{s}"].T  # (G*H, In)
        out[f"rnn.weight_hh_l{layer}"] = params[f"W_hh{s}"].T  # (G*H, H)
        out[f"rnn.bias_ih_l{layer}"] = params[f"b_h{s}"]  # (G*H,)
        out[f"rnn.bias_hh_l{layer}"] = hidden_bias(params, cell, layer)  # (G*H,)
    out["head.weight"] = params["W_hy"].T  # (V, H)
    out["head.bias"] = params["b_y"]  # (V,)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def from_torch(tensors: dict[str, np.ndarray], cell: str, layers: int) -> dict[str, np.ndarray]:
    """charrnn's params from a `to_torch` state_dict (any torch model of that shape: its two
    biases are summed where charrnn keeps one)."""
    params = {}
    for layer in range(layers):
        s = suffix(layer)
        bias_ih, bias_hh = tensors[f"rnn.bias_ih_l{layer}"], tensors[f"rnn.bias_hh_l{layer}"]
        params[f"W_xh{s}"] = tensors[f"rnn.weight_ih_l{layer}"].T
        params[f"W_hh{s}"] = tensors[f"rnn.weight_hh_l{layer}"].T
        params[f"b_h{s}"] = bias_ih + bias_hh
        if cell == "gru":  # b_hn stays inside r's product: not summed into b_h
            H = len(bias_ih) // 3
            params[f"b_h{s}"][2 * H :] = bias_ih[2 * H :]
            params[f"b_hn{s}"] = bias_hh[2 * H :]
    params["W_hy"] = tensors["head.weight"].T
    params["b_y"] = tensors["head.bias"]
    return {k: np.ascontiguousarray(v) for k, v in params.items()}


def to_onnx(params: dict[str, np.ndarray], cell: str, layers: int) -> list[dict[str, np.ndarray]]:
    """Per layer the W (1, G*H, In), R (1, G*H, H) and B (1, 2*G*H) inputs of ONNX's
    RNN/LSTM/GRU operator, gate blocks in ONNX's order."""
    order = ONNX_GATES[cell]
    out = []
    for layer in range(layers):
        s = suffix(layer)
        W = _reorder(params[f"W_xh{s}"].T, cell, order)  # (G*H, In)
        R = _reorder(params[f"W_hh{s}"].T, cell, order)  # (G*H, H)
        Wb = _reorder(params[f"b_h{s}"], cell, order)  # (G*H,)
        Rb = _reorder(hidden_bias(params, cell, layer), cell, order)  # (G*H,)
        out.append({"W": W[None], "R": R[None], "B": np.concatenate([Wb, Rb])[None]})
    return out


def from_onnx(
    tensors: list[dict[str, np.ndarray]], W_hy: np.ndarray, b_y: np.ndarray, cell: str
) -> dict[str, np.ndarray]:
    """charrnn's params from `to_onnx`'s per-layer tensors and the output layer."""
    order = ONNX_GATES[cell]
    params = {}
    for layer, t in enumerate(tensors):
        s = suffix(layer)
        Wb, Rb = np.split(t["B"][0], 2)  # (G*H,) each
        Wb, Rb = _restore(Wb, cell, order), _restore(Rb, cell, order)
        params[f"W_xh{s}"] = _restore(t["W"][0], cell, order).T
        params[f"W_hh{s}"] = _restore(t["R"][0], cell, order).T
        params[f"b_h{s}"] = Wb + Rb
        if cell == "gru":
            H = len(Wb) // 3
            params[f"b_h{s}"][2 * H :] = Wb[2 * H :]
            params[f"b_hn{s}"] = Rb[2 * H :]
    params["W_hy"], params["b_y"] = W_hy, b_y
    return {k: np.ascontiguousarray(v) for k, v in params.items()}
