"""Minibatch training of a Network: hyperparameters, SGD with momentum, and Adam."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .blas import Blas, add_scaled, load_blas, matmul_add
from .errors import BaselineError
from .network import Network, softmax_cross_entropy


@dataclass
class Hyperparameters:
    """Training settings; the defaults aim at a sanitized full build."""

    hidden: tuple[int, ...] = (1024, 300)
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 0.05
    momentum: float = 0.9
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adam"
    l2: float = 1e-4
    dropout: float = 0.3
    lr_decay: float = 0.93  # learning-rate factor applied after every epoch
    patience: int = 5  # epochs without a better validation accuracy; 0 = never stop
    seed: int = 0

    def validate(self) -> None:
        """Raise BaselineError naming the first setting out of range."""
        checks = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("learning_rate", self.learning_rate > 0, "above 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("optimizer", self.optimizer in ("sgd", "adam"), "'sgd' or 'adam'"),
            ("l2", self.l2 >= 0, "at least 0"),
            ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
            ("lr_decay", 0 < self.lr_decay <= 1, "in (0, 1]"),
            ("patience", self.patience >= 0, "at least 0"),
            ("hidden", all(size >= 1 for size in self.hidden), "sizes of at least 1"),
        ]
        for name, valid, expected in checks:
            if not valid:
                raise BaselineError(
                    f"{name} = {getattr(self, name)!r} is invalid; it must be {expected}"
                )


class StepViews(NamedTuple):
    """The step buffers of a Trainer, shaped for one minibatch size."""

    outputs: list[np.ndarray]  # each layer's activations, after ReLU and dropout
    deltas: list[np.ndarray]  # the loss gradient w.r.t. each layer's output
    masks: list[np.ndarray]  # dropout factors of each hidden layer: 0 or 1 / keep
    active: list[np.ndarray]  # where each hidden layer's input to ReLU is above 0
    ones: np.ndarray  # a vector of ones, to sum the deltas into bias gradients


ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8
ADAM_LEARNING_RATE = 0.001  # the default when --optimizer adam has no --lr


class Trainer:
    """Minibatch training of a Network, with every step array preallocated.

    SGD uses momentum in the form ``v = momentum * v + lr * (g + l2 * w)``,
    ``w -= v``: with a constant learning rate this is PyTorch's SGD with
    ``weight_decay=l2``. The learning rate is folded into the output gradient,
    and each weight gradient product is added straight into its velocity by
    BLAS gemm (``blas.matmul_add``), so the gradient is never stored and the
    update takes one pass over the weights. Adam adds ``l2 * w`` to the
    gradient too. Dropout is inverted dropout on hidden activations. The first
    layer's input gradient is never computed.

    Hidden activations, their gradients and the weights into hidden layers
    are stored unit-major, in Fortran order for the shape (rows, units). With
    OpenBLAS 0.3.31 on 2 cores, the five products of a 784-1024-10 step then
    took 15% less time at batch 128 and 3% less at batch 2000 than in C order
    (``benchmarks/bench_baseline.py`` records both). The output layer's
    weights stay in C order, in which the product ``H.T @ D`` is faster.

    ``blas`` is NumPy's OpenBLAS from ``blas.load_blas()``, or None to compute
    every product with NumPy alone (same formulas, slower at small batches).
    """

    def __init__(
        self, network: Network, settings: Hyperparameters, rng: np.random.Generator
    ) -> None:
        settings.validate()
        self.network = network
        self.settings = settings
        self.rng = rng
        self.dtype = network.dtype
        self.keep = 1.0 - float(settings.dropout)
        self.blas: Blas | None = load_blas()
        # Adam's weight gradients. SGD only uses them as scratch space.
        self.weight_gradients = [np.zeros_like(w) for w in network.weights]
        self.bias_gradients = [np.zeros_like(b) for b in network.biases]
        # SGD velocity, or Adam's first moment; Adam's second moment.
        self.first_moments = [np.zeros_like(p) for p in network.parameters]
        self.second_moments = (
            [np.zeros_like(p) for p in network.parameters]
            if settings.optimizer == "adam"
            else []
        )
        adam = settings.optimizer == "adam"
        self.scratch = [np.empty_like(p) for p in network.parameters] if adam else []
        self.adam_steps = 0
        self.capacity = 0
        self._views: dict[int, StepViews] = {}

    def _allocate(self, rows: int) -> None:
        """Allocate the per-step buffers for minibatches of up to ``rows``.

        Layer buffers are flat, so that ``step_views`` can shape them into
        contiguous arrays for a minibatch of any size up to ``rows``.
        """
        sizes = self.network.layer_sizes
        self.capacity = rows
        self.inputs = np.empty((rows, sizes[0]), self.dtype)
        self.targets = np.empty(rows, np.int64)
        self.ones = np.ones(rows, self.dtype)
        self.outputs = [np.empty(rows * size, self.dtype) for size in sizes[1:]]
        self.deltas = [np.empty(rows * size, self.dtype) for size in sizes[1:]]
        self.masks = [np.empty(rows * size, self.dtype) for size in sizes[1:-1]]
        self.active = [np.empty(rows * size, bool) for size in sizes[1:-1]]
        self._views = {}

    def step_views(self, count: int) -> StepViews:
        """Return the step buffers shaped for a minibatch of ``count`` rows.

        Each layer's arrays have shape (count, units): Fortran order for the
        hidden layers, C order for the output layer. They are cached per
        ``count``, because an epoch uses at most two minibatch sizes.
        """
        views = self._views.get(count)
        if views is not None:
            return views
        last = len(self.network.weights) - 1

        def shape(buffer: np.ndarray, layer: int) -> np.ndarray:
            units = self.network.layer_sizes[layer + 1]
            flat = buffer[: count * units]
            if layer == last:
                return flat.reshape(count, units)
            return flat.reshape(units, count).T

        views = StepViews(
            outputs=[shape(b, layer) for layer, b in enumerate(self.outputs)],
            deltas=[shape(b, layer) for layer, b in enumerate(self.deltas)],
            masks=[shape(b, layer) for layer, b in enumerate(self.masks)],
            active=[shape(b, layer) for layer, b in enumerate(self.active)],
            ones=self.ones[:count],
        )
        self._views[count] = views
        return views

    def forward_backward(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        gradient_scale: float = 1.0,
        momentum: float | None = None,
    ) -> tuple[np.generic, int]:
        """Compute the gradients of one minibatch; return its loss and correct count.

        The gradients are of the mean cross-entropy (no L2 term) times
        ``gradient_scale``. Without ``momentum`` they fill ``weight_gradients``
        and ``bias_gradients``. With ``momentum``, each weight gradient is
        added into its SGD velocity instead, as ``v = momentum * v + g``, and
        ``weight_gradients`` only serve as scratch space. ``inputs`` must have
        the network's dtype.
        """
        views = self.step_views(len(inputs))
        weights = self.network.weights
        last = len(weights) - 1
        activation = inputs
        for layer, (weight, bias) in enumerate(zip(weights, self.network.biases)):
            output = views.outputs[layer]
            np.matmul(activation, weight, out=output)
            output += bias
            if layer < last:
                # ReLU as a product with the mask that backpropagation needs
                # anyway, which is faster than np.maximum. It differs only
                # for an input of -inf, which gives NaN instead of 0; the loss
                # is then not finite, and fit() reports the divergence.
                active = views.active[layer]
                np.greater(output, 0, out=active)
                output *= active
                if self.keep < 1.0:
                    flat_mask = self.masks[layer][: output.size]
                    # Inverted dropout: kept units are scaled by 1 / keep, so
                    # evaluation needs no rescaling.
                    self.rng.random(out=flat_mask, dtype=self.dtype)
                    np.less(flat_mask, self.keep, out=flat_mask)
                    flat_mask *= 1.0 / self.keep
                    output *= views.masks[layer]
            activation = output
        correct = int(np.count_nonzero(activation.argmax(axis=1) == targets))
        delta = views.deltas[last]
        loss, _ = softmax_cross_entropy(activation, targets, gradient=delta)
        if gradient_scale != 1.0:
            delta *= gradient_scale
        for layer in range(last, -1, -1):
            below = inputs if layer == 0 else views.outputs[layer - 1]
            if momentum is None:
                np.matmul(below.T, delta, out=self.weight_gradients[layer])
            else:
                matmul_add(
                    below.T,
                    delta,
                    self.first_moments[layer],
                    momentum,
                    self.weight_gradients[layer],
                    self.blas,
                )
            # A matrix-vector product sums the columns several times faster
            # than np.sum when the rows are the slow axis.
            np.matmul(views.ones, delta, out=self.bias_gradients[layer])
            if layer == 0:
                break
            next_delta = views.deltas[layer - 1]
            np.matmul(delta, weights[layer].T, out=next_delta)
            if self.keep < 1.0:
                next_delta *= views.masks[layer - 1]
            next_delta *= views.active[layer - 1]
            delta = next_delta
        return loss, correct

    def step(
        self, inputs: np.ndarray, targets: np.ndarray, learning_rate: float
    ) -> tuple[np.generic, int]:
        """Run one optimiser step on a minibatch; return its loss and correct count."""
        if self.settings.optimizer == "sgd":
            return self.sgd_step(inputs, targets, float(learning_rate))
        return self.adam_step(inputs, targets, float(learning_rate))

    def sgd_step(
        self, inputs: np.ndarray, targets: np.ndarray, learning_rate: float
    ) -> tuple[np.generic, int]:
        """Run one SGD step with momentum; return the loss and correct count."""
        momentum = float(self.settings.momentum)
        loss, correct = self.forward_backward(
            inputs, targets, gradient_scale=learning_rate, momentum=momentum
        )
        decay = learning_rate * float(self.settings.l2)
        weight_count = len(self.network.weights)
        for layer, weight in enumerate(self.network.weights):
            # forward_backward already set velocity = momentum * velocity + g.
            velocity = self.first_moments[layer]
            scratch = self.weight_gradients[layer]
            if decay:
                add_scaled(decay, weight, velocity, scratch, self.blas)
            add_scaled(-1.0, velocity, weight, scratch, self.blas)
        for layer, bias in enumerate(self.network.biases):
            velocity = self.first_moments[weight_count + layer]
            velocity *= momentum
            velocity += self.bias_gradients[layer]
            bias -= velocity
        return loss, correct

    def adam_step(
        self, inputs: np.ndarray, targets: np.ndarray, learning_rate: float
    ) -> tuple[np.generic, int]:
        """Run one Adam step; return the loss and correct count."""
        settings = self.settings
        loss, correct = self.forward_backward(inputs, targets)
        gradients = [*self.weight_gradients, *self.bias_gradients]
        parameters = self.network.parameters
        weight_count = len(self.network.weights)
        self.adam_steps += 1
        first_correction = 1.0 - ADAM_BETA1**self.adam_steps
        second_correction = 1.0 - ADAM_BETA2**self.adam_steps
        step_size = learning_rate * math.sqrt(second_correction) / first_correction
        for index, (parameter, gradient) in enumerate(zip(parameters, gradients)):
            first, second = self.first_moments[index], self.second_moments[index]
            scratch = self.scratch[index]
            if settings.l2 and index < weight_count:
                np.multiply(parameter, float(settings.l2), out=scratch)
                gradient += scratch
            first *= ADAM_BETA1
            np.multiply(gradient, 1.0 - ADAM_BETA1, out=scratch)
            first += scratch
            second *= ADAM_BETA2
            np.square(gradient, out=scratch)
            scratch *= 1.0 - ADAM_BETA2
            second += scratch
            np.sqrt(second, out=scratch)
            scratch += ADAM_EPSILON
            np.divide(first, scratch, out=scratch)
            scratch *= step_size
            parameter -= scratch
        return loss, correct

    def train_epoch(
        self, pixels: np.ndarray, labels: np.ndarray, learning_rate: float
    ) -> tuple[float, float]:
        """Run one shuffled pass; return the mean training loss and accuracy.

        Both come from the minibatches as trained, so with dropout active.
        Raises TypeError when ``pixels`` does not have the network's dtype.
        """
        if pixels.dtype != self.dtype:
            raise TypeError(
                f"training pixels are {pixels.dtype}, the network is {self.dtype}; "
                "normalise them with normalize_pixels"
            )
        count = len(pixels)
        batch = min(self.settings.batch_size, count)
        if self.capacity < batch:
            self._allocate(batch)
        order = self.rng.permutation(count)
        total_loss = 0.0
        total_correct = 0
        for start in range(0, count, batch):
            index = order[start : start + batch]
            rows = len(index)
            # mode="clip" lets np.take write straight into `out` unbuffered.
            inputs = np.take(pixels, index, axis=0, out=self.inputs[:rows], mode="clip")
            targets = np.take(labels, index, out=self.targets[:rows], mode="clip")
            loss, correct = self.step(inputs, targets, learning_rate)
            if loss.dtype != self.dtype:
                raise TypeError(
                    f"the minibatch loss is {loss.dtype}, expected {self.dtype}: an "
                    "operand of the training step is float64"
                )
            total_loss += float(loss) * rows
            total_correct += correct
        self.check_dtypes()
        return total_loss / count, total_correct / count

    def check_dtypes(self) -> None:
        """Raise TypeError if any parameter or optimiser array left the dtype."""
        arrays = [
            *self.network.parameters,
            *self.weight_gradients,
            *self.bias_gradients,
            *self.first_moments,
            *self.second_moments,
        ]
        for array in arrays:
            if array.dtype != self.dtype:
                raise TypeError(f"an array of shape {array.shape} became {array.dtype}")
