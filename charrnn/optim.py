"""Optimizers that update parameter arrays in place, and global-norm gradient clipping."""

from __future__ import annotations

import math

import numpy as np

from charrnn.choices import OPTIMIZER_NAMES
from charrnn.errors import ConfigError


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; returns the
    norm before clipping (inf or nan when a gradient is not finite)."""
    with np.errstate(over="ignore"):
        norm = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in grads.values()))
    if not math.isfinite(norm):  # float32 squares overflow above 1.8e19: redo in float64
        norm = math.sqrt(sum(float(np.square(g, dtype=np.float64).sum()) for g in grads.values()))
    if max_norm > 0 and math.isfinite(norm) and norm > max_norm:  # non-finite: caller stops
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


class Optimizer:
    """Base: per-parameter state arrays, saved and restored by name."""

    slots: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.t = 0
        self.state = {
            f"{slot}/{k}": np.zeros_like(p) for slot in self.slots for k, p in params.items()
        }

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        self.t += 1
        for k, p in params.items():
            self._update(k, p, grads[k], lr)

    def _update(self, key: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"t": np.array(self.t, np.int64), **self.state}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for key, value in self.state.items():
            if key not in state or state[key].shape != value.shape:
                raise ValueError(f"optimizer state {key!r} is missing or has the wrong shape")
            value[...] = state[key]
        self.t = int(state["t"])


class SGD(Optimizer):
    """SGD with (heavy-ball) momentum: v = mu v + g; p -= lr v."""

    slots = ("v",)

    def __init__(self, params: dict[str, np.ndarray], momentum: float = 0.9) -> None:
        super().__init__(params)
        self.momentum = momentum

    def _update(self, key, p, g, lr):
        v = self.state[f"v/{key}"]
        v *= self.momentum
        v += g
        p -= lr * v


class Adagrad(Optimizer):
    """Adagrad, as min-char-rnn uses it: m += g^2; p -= lr g / sqrt(m + eps)."""

    slots = ("m",)

    def __init__(self, params: dict[str, np.ndarray], eps: float = 1e-8) -> None:
        super().__init__(params)
        self.eps = eps

    def _update(self, key, p, g, lr):
        m = self.state[f"m/{key}"]
        m += g * g
        p -= lr * g / np.sqrt(m + self.eps)


class RMSprop(Optimizer):
    """RMSprop: m = a m + (1 - a) g^2; p -= lr g / (sqrt(m) + eps)."""

    slots = ("m",)

    def __init__(self, params: dict[str, np.ndarray], alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params)
        self.alpha, self.eps = alpha, eps

    def _update(self, key, p, g, lr):
        m = self.state[f"m/{key}"]
        m *= self.alpha
        m += (1 - self.alpha) * (g * g)
        p -= lr * g / (np.sqrt(m) + self.eps)


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba), the default."""

    slots = ("m", "v")

    def __init__(
        self,
        params: dict[str, np.ndarray],
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params)
        self.beta1, self.beta2 = betas
        self.eps = eps
        # Scratch per parameter, not state: every step writes it before reading it. Working
        # in place saves the six temporaries per parameter the plain expression allocates.
        self.scratch = {k: np.empty_like(p) for k, p in params.items()}

    def _update(self, key, p, g, lr):
        m, v, s = self.state[f"m/{key}"], self.state[f"v/{key}"], self.scratch[key]
        m *= self.beta1
        np.multiply(g, 1 - self.beta1, out=s)
        m += s  # m = beta1 m + (1 - beta1) g
        v *= self.beta2
        np.multiply(g, g, out=s)
        s *= 1 - self.beta2
        v += s  # v = beta2 v + (1 - beta2) g^2
        step_size = lr * math.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        np.sqrt(v, out=s)
        s += self.eps
        np.divide(m, s, out=s)
        s *= step_size
        p -= s  # p -= step_size m / (sqrt(v) + eps)


OPTIMIZERS = dict(zip(OPTIMIZER_NAMES, (Adam, Adagrad, RMSprop, SGD), strict=True))


def make_optimizer(name: str, params: dict[str, np.ndarray]) -> Optimizer:
    """An optimizer by name: adam, adagrad, rmsprop or sgd."""
    try:
        return OPTIMIZERS[name](params)
    except KeyError:
        raise ConfigError(
            f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}"
        ) from None
