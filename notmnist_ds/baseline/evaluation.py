"""Evaluate a network on a split: accuracy, loss and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .data import SplitArrays
from .network import Network, softmax_cross_entropy


@dataclass
class Evaluation:
    """Accuracy, loss and confusion matrix of a network on one split."""

    accuracy: float
    loss: float
    confusion: np.ndarray  # confusion[true, predicted] counts
    count: int

    def per_class_accuracy(self, class_names: Sequence[str]) -> dict[str, float | None]:
        """Return each class's recall; None for a class with no rows."""
        totals = self.confusion.sum(axis=1)
        return {
            name: (float(self.confusion[i, i] / totals[i]) if totals[i] else None)
            for i, name in enumerate(class_names)
        }


def evaluate(network: Network, split: SplitArrays) -> Evaluation:
    """Evaluate ``network`` on a split, without dropout."""
    classes = network.layer_sizes[-1]
    if len(split.labels) == 0:
        return Evaluation(
            float("nan"), float("nan"), np.zeros((classes, classes), int), 0
        )
    logits = network.logits(split.pixels)
    predicted = logits.argmax(axis=1)
    loss, _ = softmax_cross_entropy(logits, split.labels, gradient=logits)
    confusion = np.bincount(
        split.labels * classes + predicted, minlength=classes * classes
    ).reshape(classes, classes)
    accuracy = float(np.trace(confusion) / len(split.labels))
    return Evaluation(accuracy, float(loss), confusion, len(split.labels))
