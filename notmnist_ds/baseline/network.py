"""The network and its loss: a fully connected ReLU network and softmax cross-entropy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data import DTYPE
from .errors import BaselineError

# Rows evaluated per chunk, which bounds the hidden activations' memory.
EVALUATION_CHUNK = 4_096


def softmax_cross_entropy(
    logits: np.ndarray, labels: np.ndarray, gradient: np.ndarray | None = None
) -> tuple[np.generic, np.ndarray]:
    """Return the mean softmax cross-entropy and its gradient w.r.t. the logits.

    Uses log-sum-exp after subtracting each row's maximum, so the loss stays
    finite for logits of any finite size. ``gradient``, if given, is an array
    of the logits' shape and dtype that receives ``(softmax - one_hot) / N``;
    it may be ``logits`` itself. The loss has the logits' dtype.
    """
    count = logits.shape[0]
    if gradient is None:
        gradient = np.empty_like(logits)
    rows = np.arange(count)
    peak = logits.max(axis=1, keepdims=True)
    np.subtract(logits, peak, out=gradient)
    true_logit = gradient[rows, labels]
    np.exp(gradient, out=gradient)
    total = gradient.sum(axis=1, keepdims=True)
    loss = (np.log(total[:, 0]) - true_logit).mean()
    gradient /= total
    gradient[rows, labels] -= 1
    gradient /= count
    return loss, gradient


class Network:
    """A fully connected ReLU network; with no hidden layer, softmax regression.

    ``weights[i]`` has shape (fan_in, fan_out) and He initialisation
    (normal, std sqrt(2 / fan_in)); biases start at zero. All arrays share
    ``dtype``: float32 for training, float64 only for gradient checks.

    The weights into a hidden layer are stored in Fortran order, so each
    unit's incoming weights are contiguous, as in PyTorch's ``Linear``. The
    output layer's weights are in C order. ``Trainer`` explains why.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        rng: np.random.Generator,
        dtype: type = DTYPE,
    ) -> None:
        if len(layer_sizes) < 2 or min(layer_sizes) < 1:
            raise BaselineError(
                f"layer sizes {list(layer_sizes)} are invalid; give the input size, "
                "any hidden sizes and the class count, each at least 1"
            )
        self.layer_sizes = [int(size) for size in layer_sizes]
        self.dtype = np.dtype(dtype)
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        last = len(self.layer_sizes) - 2
        for layer, (fan_in, fan_out) in enumerate(
            zip(self.layer_sizes[:-1], self.layer_sizes[1:])
        ):
            weight = rng.standard_normal((fan_in, fan_out), dtype=self.dtype)
            weight *= math.sqrt(2.0 / fan_in)  # a Python float keeps the dtype
            if layer < last:
                weight = np.asfortranarray(weight)
            self.weights.append(weight)
            self.biases.append(np.zeros(fan_out, self.dtype))

    @property
    def parameters(self) -> list[np.ndarray]:
        return [*self.weights, *self.biases]

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Return the logits for (N, 784) inputs, evaluated without dropout."""
        out = np.empty((len(pixels), self.layer_sizes[-1]), self.dtype)
        last = len(self.weights) - 1
        for start in range(0, len(pixels), EVALUATION_CHUNK):
            activation = pixels[start : start + EVALUATION_CHUNK]
            for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
                activation = activation @ weight
                activation += bias
                if layer < last:
                    np.maximum(activation, 0, out=activation)
            out[start : start + len(activation)] = activation
        return out

    def save(self, path: Path) -> None:
        """Write the weights and biases to an ``.npz`` file."""
        arrays = {f"weight_{i}": w for i, w in enumerate(self.weights)}
        arrays.update({f"bias_{i}": b for i, b in enumerate(self.biases)})
        np.savez(path, layer_sizes=np.array(self.layer_sizes), **arrays)
