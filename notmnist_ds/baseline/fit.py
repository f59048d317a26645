"""Train for several epochs with learning-rate decay and early stopping."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .data import SplitArrays
from .errors import BaselineError
from .evaluation import evaluate
from .network import Network
from .trainer import Hyperparameters, Trainer

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """Outcome of ``fit``: the per-epoch history and the epoch it kept."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0


def fit(
    network: Network,
    settings: Hyperparameters,
    train: SplitArrays,
    validation: SplitArrays,
    rng: np.random.Generator,
) -> TrainingResult:
    """Train with learning-rate decay and early stopping on validation accuracy.

    Logs one line per epoch. When training ends, the network has the weights
    of the epoch with the best validation accuracy.
    """
    trainer = Trainer(network, settings, rng)
    result = TrainingResult()
    best_accuracy = -1.0
    best_parameters = [p.copy(order="K") for p in network.parameters]
    since_best = 0
    started = time.perf_counter()
    for epoch in range(1, settings.epochs + 1):
        learning_rate = settings.learning_rate * settings.lr_decay ** (epoch - 1)
        epoch_start = time.perf_counter()
        train_loss, train_accuracy = trainer.train_epoch(
            train.pixels, train.labels, learning_rate
        )
        train_seconds = time.perf_counter() - epoch_start
        if not math.isfinite(train_loss):
            raise BaselineError(
                f"training diverged at epoch {epoch} (loss {train_loss}); lower "
                f"--lr (now {settings.learning_rate})"
            )
        scores = evaluate(network, validation)
        result.history.append(
            {
                "epoch": epoch,
                "learning_rate": learning_rate,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "validation_loss": scores.loss,
                "validation_accuracy": scores.accuracy,
                "seconds": train_seconds,
            }
        )
        logger.info(
            "epoch %d/%d  lr %.4g  train loss %.4f acc %.4f  validation loss %.4f "
            "acc %.4f  %.1f s",
            epoch,
            settings.epochs,
            learning_rate,
            train_loss,
            train_accuracy,
            scores.loss,
            scores.accuracy,
            train_seconds,
        )
        if scores.accuracy > best_accuracy:
            best_accuracy = scores.accuracy
            result.best_epoch = epoch
            for saved, current in zip(best_parameters, network.parameters):
                np.copyto(saved, current)
            since_best = 0
        else:
            since_best += 1
            if settings.patience and since_best >= settings.patience:
                logger.info(
                    "validation accuracy has not improved for %d epochs; "
                    "stopping and keeping epoch %d",
                    since_best,
                    result.best_epoch,
                )
                result.stopped_early = True
                break
    for saved, current in zip(best_parameters, network.parameters):
        np.copyto(current, saved)
    result.seconds = time.perf_counter() - started
    return result
