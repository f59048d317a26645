"""Train NumPy baselines on a notMNIST build: softmax regression and a ReLU MLP.

Run ``python train_baseline.py --dataset DIR --output RUN_DIR`` on a folder that
``notmnist build`` wrote, on a Hub id, or on the name ``notmnist``. The run
writes ``metrics.json``, ``curves.png`` and ``weights.npz`` to ``RUN_DIR``.
``--model logistic --train-samples 50,100,1000,5000,all`` trains softmax
regression on growing training sets. ``--compare`` also evaluates the trained
network on the raw and the sanitized validation and test splits.

Everything runs in float32 with NumPy only. The trainer never imports SciPy,
imagehash or the ``dedup`` package: a second OpenBLAS that alternates with
NumPy's on two threads made training 3.3x slower. ``datasets`` 5.2 imports
``scipy.io`` while it loads a dataset when SciPy is installed, but that does
not load SciPy's OpenBLAS.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

logger = logging.getLogger("train_baseline")

IMAGE_SIDE = 28
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE
CONFIGS = ("sanitized", "raw")
INPUT_RANGES = ("auto", "uint8", "unit", "centered")
DTYPE = np.float32

# Rows decoded per chunk: bounds the memory of the decompressed PNG rows
# (about 27 MB) while keeping NumPy's per-call overhead small.
DECODE_CHUNK = 32_768
EVALUATION_CHUNK = 4_096


class BaselineError(Exception):
    """Invalid input or option; the message names the value and the fix."""


# ---------------------------------------------------------------------------
# PNG decoding
# ---------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# IHDR fields of a 28x28, 8-bit grayscale, non-interlaced PNG: width, height,
# bit depth 8, colour type 0, compression 0, filter method 0, interlace 0.
GRAY8_IHDR = IMAGE_SIDE.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
FILTERED_ROW_BYTES = 1 + IMAGE_SIDE  # the filter type byte, then the pixels
FILTERED_IMAGE_BYTES = IMAGE_SIDE * FILTERED_ROW_BYTES


def extract_gray8_stream(blob: bytes) -> bytes | None:
    """Return the zlib stream of a 28x28 8-bit grayscale non-interlaced PNG.

    Returns None for any other PNG (other size, colour type, bit depth or
    interlacing) so the caller can hand it to Pillow. Raises ValueError when
    ``blob`` is not a PNG at all.
    """
    if blob[:8] != PNG_SIGNATURE:
        raise ValueError(f"not a PNG (first bytes {blob[:8]!r})")
    if blob[12:16] != b"IHDR" or blob[16:29] != GRAY8_IHDR:
        return None
    parts = []
    position = 33  # signature (8) + IHDR chunk (4 + 4 + 13 + 4)
    while position + 8 <= len(blob):
        length = int.from_bytes(blob[position : position + 4], "big")
        kind = blob[position + 4 : position + 8]
        if kind == b"IDAT":
            parts.append(blob[position + 8 : position + 8 + length])
        elif kind == b"IEND":
            break
        position += 12 + length
    return b"".join(parts)


def unfilter_rows(filtered: np.ndarray) -> np.ndarray:
    """Undo PNG row filtering for a batch of 8-bit grayscale images.

    ``filtered`` is uint8 of shape (N, 28, 29): each row starts with its filter
    type (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth). Returns uint8 (N, 28, 28).
    The loops run over rows and, for Average and Paeth, over columns; every
    step is vectorised across the images. Raises ValueError for a filter type
    above 4, naming the image.
    """
    count = filtered.shape[0]
    filters = filtered[:, :, 0]
    if count and filters.max() > 4:
        image, row = np.argwhere(filters > 4)[0]
        raise ValueError(
            f"image {image}: invalid PNG filter type {filters[image, row]} in row {row}"
        )
    data = filtered[:, :, 1:]
    pixels = np.empty((count, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    previous = np.zeros((count, IMAGE_SIDE), np.uint8)
    for row in range(IMAGE_SIDE):
        kinds = filters[:, row]
        line = pixels[:, row, :]
        line[...] = data[:, row, :]
        chosen = np.flatnonzero(kinds == 1)
        if chosen.size:
            # A uint8 running sum wraps modulo 256, as the Sub filter does.
            line[chosen] = np.cumsum(data[chosen, row, :], axis=1, dtype=np.uint8)
        chosen = np.flatnonzero(kinds == 2)
        if chosen.size:
            line[chosen] = data[chosen, row, :] + previous[chosen]
        for kind in (3, 4):
            chosen = np.flatnonzero(kinds == kind)
            if chosen.size:
                line[chosen] = _unfilter_sequential(
                    kind, data[chosen, row, :], previous[chosen]
                )
        previous = line
    return pixels


def _unfilter_sequential(kind: int, raw: np.ndarray, above: np.ndarray) -> np.ndarray:
    """Undo the Average (3) or Paeth (4) filter, one column at a time."""
    raw = raw.astype(np.int16)
    above = above.astype(np.int16)
    out = np.empty(raw.shape, np.int16)
    left = np.zeros(raw.shape[0], np.int16)
    upper_left = np.zeros(raw.shape[0], np.int16)
    for column in range(IMAGE_SIDE):
        up = above[:, column]
        if kind == 3:
            predictor = (left + up) >> 1
        else:
            # Distances from the estimate left + up - upper_left to each
            # neighbour. The PNG Paeth predictor breaks ties toward left, then up.
            distance_left = np.abs(up - upper_left)
            distance_up = np.abs(left - upper_left)
            distance_corner = np.abs(left + up - 2 * upper_left)
            predictor = np.where(distance_up <= distance_corner, up, upper_left)
            use_left = (distance_left <= distance_up) & (
                distance_left <= distance_corner
            )
            predictor = np.where(use_left, left, predictor)
        left = (raw[:, column] + predictor) & 0xFF
        out[:, column] = left
        upper_left = up
    return out.astype(np.uint8)


def decode_with_pillow(blob: bytes) -> np.ndarray:
    """Decode any image Pillow reads into 28x28 uint8 grayscale.

    16-bit grayscale keeps its top 8 bits, because Pillow's conversion to
    mode "L" would clip it instead of scaling.
    """
    with Image.open(io.BytesIO(blob)) as image:
        if image.size != (IMAGE_SIDE, IMAGE_SIDE):
            raise ValueError(
                f"image is {image.size[0]}x{image.size[1]}, expected 28x28"
            )
        if image.mode.startswith("I;16"):
            return (np.asarray(image) >> 8).astype(np.uint8)
        if image.mode != "L":
            image = image.convert("L")
        return np.asarray(image, dtype=np.uint8)


def decode_png_batch(blobs: Sequence[bytes | None]) -> tuple[np.ndarray, int]:
    """Decode encoded 28x28 images into uint8 (N, 28, 28) pixels.

    Images that are 8-bit grayscale PNGs, as in notMNIST builds, are inflated
    with zlib and unfiltered in bulk. That is several times faster than one
    Pillow call per image. Other formats go through Pillow and convert to
    grayscale. Returns the pixels and how many images went through Pillow.
    Raises ValueError naming the position of an empty, unreadable or wrongly
    sized image.
    """
    count = len(blobs)
    pixels = np.empty((count, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    streams: list[bytes] = []
    fast_rows: list[int] = []
    slow_rows: list[int] = []
    for position, blob in enumerate(blobs):
        if not blob:
            raise ValueError(f"image {position} is empty")
        try:
            stream = extract_gray8_stream(blob)
            if stream is None:
                slow_rows.append(position)
                continue
            raw = zlib.decompress(stream, bufsize=FILTERED_IMAGE_BYTES)
        except (ValueError, zlib.error) as error:
            raise ValueError(
                f"image {position} is not a readable PNG: {error}"
            ) from None
        if len(raw) != FILTERED_IMAGE_BYTES:
            raise ValueError(
                f"image {position}: PNG data inflates to {len(raw)} bytes, "
                f"expected {FILTERED_IMAGE_BYTES}"
            )
        streams.append(raw)
        fast_rows.append(position)
    if fast_rows:
        filtered = np.frombuffer(b"".join(streams), np.uint8)
        filtered = filtered.reshape(len(fast_rows), IMAGE_SIDE, FILTERED_ROW_BYTES)
        try:
            pixels[fast_rows] = unfilter_rows(filtered)
        except ValueError as error:
            raise ValueError(f"images from {fast_rows[0]} on: {error}") from None
    for position in slow_rows:
        try:
            pixels[position] = decode_with_pillow(blobs[position])
        except (OSError, ValueError) as error:
            raise ValueError(f"image {position}: {error}") from None
    return pixels, len(slow_rows)


# ---------------------------------------------------------------------------
# Loading and normalising the splits
# ---------------------------------------------------------------------------


@dataclass
class SplitArrays:
    """One split as training arrays: float32 pixels (N, 784) and int64 labels."""

    pixels: np.ndarray
    labels: np.ndarray
    input_range: str
    fingerprint: str


def detect_input_range(pixels: np.ndarray) -> str:
    """Name the value range of raw image values, so they are normalised once.

    Integer arrays and floats within [0, 255] that exceed 1 are pixel
    intensities (``"uint8"``). Floats with a negative value, all within
    [-0.5, 0.5], are already normalised (``"centered"``). Other floats within
    [0, 1] are ``"unit"``; data within [0, 0.5] counts as unit, because
    normalised notMNIST has a background of -0.5. Raises BaselineError for
    NaN, infinities or values outside [-0.5, 255].
    """
    if pixels.size == 0:
        return "uint8"
    low = float(pixels.min())
    high = float(pixels.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise BaselineError(
            f"image values include NaN or infinity (min {low}, max {high}); "
            "clean the dataset's image column"
        )
    if np.issubdtype(pixels.dtype, np.integer) or high > 1.0:
        if low >= 0.0 and high <= 255.0:
            return "uint8"
    elif low >= 0.0:
        return "unit"
    elif low >= -0.5 and high <= 0.5:
        return "centered"
    raise BaselineError(
        f"image values span [{low}, {high}], which matches none of the ranges "
        "[0, 255], [0, 1] or [-0.5, 0.5]; rescale the image column into one of "
        "them and pass it with --input-range"
    )


RANGE_BOUNDS = {"uint8": (0.0, 255.0), "unit": (0.0, 1.0), "centered": (-0.5, 0.5)}


def normalize_pixels(
    pixels: np.ndarray, input_range: str = "auto", out: np.ndarray | None = None
) -> tuple[np.ndarray, str]:
    """Map images to float32 (N, 784) in [-0.5, 0.5], as ``(x - 127.5) / 255``.

    ``input_range`` is ``"uint8"`` (values 0..255), ``"unit"`` (0..1, shifted
    by -0.5), ``"centered"`` (already in [-0.5, 0.5], only cast) or ``"auto"``
    (see ``detect_input_range``). Writes into ``out`` (float32, (N, 784)) if
    given. Returns the array and the range applied. Raises BaselineError when
    the values fall outside the stated range or the images are not 28x28.
    """
    if pixels.ndim < 2 or math.prod(pixels.shape[1:]) != IMAGE_PIXELS:
        raise BaselineError(
            f"images have shape {pixels.shape[1:]}, expected (28, 28) or (784,); "
            "use a notMNIST build or resize the images to 28x28"
        )
    if input_range == "auto":
        input_range = detect_input_range(pixels)
    elif input_range not in RANGE_BOUNDS:
        raise BaselineError(
            f"unknown input range {input_range!r}; use one of {', '.join(INPUT_RANGES)}"
        )
    elif pixels.size:
        low, high = RANGE_BOUNDS[input_range]
        if float(pixels.min()) < low or float(pixels.max()) > high:
            raise BaselineError(
                f"image values span [{pixels.min()}, {pixels.max()}], outside the "
                f"{input_range} range [{low}, {high}]; pass --input-range auto"
            )
    flat = pixels.reshape(len(pixels), IMAGE_PIXELS)
    if out is None:
        out = np.empty(flat.shape, DTYPE)
    if input_range == "uint8":
        # Subtract and divide in float32: NumPy 2 computes `uint8 - 127.5`
        # in float64.
        np.subtract(flat, DTYPE(127.5), out=out, dtype=DTYPE)
        out /= DTYPE(255.0)
    elif input_range == "unit":
        np.subtract(flat, DTYPE(0.5), out=out, dtype=DTYPE)
    else:
        out[...] = flat
    return out, input_range


def read_labels(split: datasets.Dataset, split_name: str) -> tuple[np.ndarray, int]:
    """Return a split's labels as int64 and the ClassLabel's number of classes.

    Raises BaselineError when the label column is missing, is not a
    ClassLabel, or contains a value outside ``0 .. num_classes - 1``.
    """
    feature = split.features.get("label")
    if not isinstance(feature, datasets.ClassLabel):
        raise BaselineError(
            f"{split_name}: the 'label' column is {feature!r}, expected a "
            "datasets.ClassLabel; use a notMNIST build or cast the column"
        )
    column = split.select_columns(["label"]).with_format("arrow")[:]["label"]
    if column.null_count:
        raise BaselineError(
            f"{split_name}: {column.null_count} labels are missing; drop those rows"
        )
    labels = column.to_numpy().astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= feature.num_classes))
    if bad.size:
        raise BaselineError(
            f"{split_name}: label {labels[bad[0]]} at row {bad[0]} is outside the "
            f"ClassLabel's {feature.num_classes} classes ({bad.size} rows in all); "
            "fix or drop those rows"
        )
    return labels, feature.num_classes


def read_image_values(split: datasets.Dataset, split_name: str) -> np.ndarray:
    """Return an image column that is not ``datasets.Image`` as an array.

    Array2D columns and lists of numbers are read through
    ``with_format("numpy")`` unchanged. Raises BaselineError when the images
    differ in shape.
    """
    values = split.select_columns(["image"]).with_format("numpy")[:]["image"]
    values = np.asarray(values)
    if values.dtype == object:
        raise BaselineError(
            f"{split_name}: the image column contains arrays of different shapes; "
            "every image must be 28x28"
        )
    return values


def decode_image_column(
    split: datasets.Dataset, split_name: str, out: np.ndarray
) -> None:
    """Decode a ``datasets.Image`` column into ``out``, float32 (N, 784).

    Decodes ``DECODE_CHUNK`` rows at a time with ``decode_png_batch`` and
    normalises each chunk in place, so no uint8 copy of the split is kept.
    Images stored by path instead of bytes are read from their files.
    """
    through_pillow = 0
    table = split.select_columns(["image"]).with_format("arrow")
    starts = range(0, split.num_rows, DECODE_CHUNK)
    for start in tqdm(
        starts, desc=f"decoding {split_name}", unit="chunk", disable=len(starts) < 4
    ):
        stop = min(start + DECODE_CHUNK, split.num_rows)
        images = table[start:stop]["image"].combine_chunks()
        blobs = images.field("bytes").to_pylist()
        paths = images.field("path").to_pylist()
        for position, blob in enumerate(blobs):
            if blob is None and paths[position]:
                try:
                    blobs[position] = Path(paths[position]).read_bytes()
                except OSError as error:
                    raise BaselineError(
                        f"{split_name}, row {start + position}: the image has no "
                        f"embedded bytes and its file cannot be read ({error}); "
                        "rebuild the dataset with embedded images"
                    ) from None
        try:
            pixels, slow = decode_png_batch(blobs)
        except ValueError as error:
            raise BaselineError(
                f"{split_name}, rows {start}..{stop - 1}: {error}; rebuild the "
                "dataset or drop that row"
            ) from None
        normalize_pixels(pixels, "uint8", out=out[start:stop])
        through_pillow += slow
    if through_pillow:
        logger.info(
            "%s: %d images were not 8-bit grayscale PNGs and went through Pillow",
            split_name,
            through_pillow,
        )


def read_pixels(
    split: datasets.Dataset, split_name: str, input_range: str
) -> tuple[np.ndarray, str]:
    """Return a split's images as float32 (N, 784) in [-0.5, 0.5] and the range applied.

    Decoded ``datasets.Image`` columns are 0..255 intensities, so they accept
    only ``input_range`` "auto" or "uint8". Other columns go through
    ``normalize_pixels``.
    """
    feature = split.features.get("image")
    if feature is None:
        raise BaselineError(
            f"{split_name}: no 'image' column (columns: {split.column_names})"
        )
    if not isinstance(feature, datasets.Image):
        return normalize_pixels(read_image_values(split, split_name), input_range)
    if input_range not in ("auto", "uint8"):
        raise BaselineError(
            f"{split_name}: --input-range {input_range} does not fit an Image column, "
            "whose decoded values are 0..255; pass --input-range auto"
        )
    out = np.empty((split.num_rows, IMAGE_PIXELS), DTYPE)
    decode_image_column(split, split_name, out)
    return out, "uint8"


def load_config(dataset: str, config: str) -> datasets.DatasetDict:
    """Load one configuration of a notMNIST build with ``datasets.load_dataset``."""
    try:
        return datasets.load_dataset(dataset, config)
    except (FileNotFoundError, ValueError, ConnectionError) as error:
        raise BaselineError(
            f"cannot load dataset {dataset!r}, config {config!r}: {error}. Pass a "
            "folder written by 'notmnist build --output DIR', or a Hub id"
        ) from error


def split_arrays(
    dataset: datasets.DatasetDict,
    split_name: str,
    input_range: str = "auto",
    num_classes: int | None = None,
) -> tuple[SplitArrays, int]:
    """Turn one split into float32 pixels and int64 labels.

    Returns the arrays and the ClassLabel's number of classes. Raises
    BaselineError when the split is missing, or when its class count differs
    from ``num_classes``.
    """
    if split_name not in dataset:
        raise BaselineError(
            f"split {split_name!r} not found; the dataset has {sorted(dataset)}"
        )
    split = dataset[split_name]
    labels, classes = read_labels(split, split_name)
    if num_classes is not None and classes != num_classes:
        raise BaselineError(
            f"{split_name}: the ClassLabel has {classes} classes, the training split "
            f"{num_classes}; use splits of one build"
        )
    pixels, applied = read_pixels(split, split_name, input_range)
    return SplitArrays(pixels, labels, applied, split._fingerprint), classes


# ---------------------------------------------------------------------------
# Network, loss and training
# ---------------------------------------------------------------------------


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
        for fan_in, fan_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            weight = rng.standard_normal((fan_in, fan_out), dtype=self.dtype)
            weight *= math.sqrt(2.0 / fan_in)  # a Python float keeps the dtype
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


ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPSILON = 1e-8
ADAM_LEARNING_RATE = 0.001  # the default when --optimizer adam has no --lr


class Trainer:
    """Minibatch training of a Network, with every step array preallocated.

    SGD uses momentum in the form ``v = momentum * v + lr * (g + l2 * w)``,
    ``w -= v``: with a constant learning rate this is PyTorch's SGD with
    ``weight_decay=l2``, and the learning rate is folded into the output
    gradient so each step saves a pass over the weights. Adam adds ``l2 * w``
    to the gradient too. Dropout is inverted dropout on hidden activations.
    The first layer's input gradient is never computed.
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

    def _allocate(self, rows: int) -> None:
        """Allocate the per-step buffers for minibatches of up to ``rows``."""
        sizes = self.network.layer_sizes
        self.capacity = rows
        self.inputs = np.empty((rows, sizes[0]), self.dtype)
        self.targets = np.empty(rows, np.int64)
        self.outputs = [np.empty((rows, size), self.dtype) for size in sizes[1:]]
        self.deltas = [np.empty((rows, size), self.dtype) for size in sizes[1:]]
        self.masks = [np.empty((rows, size), self.dtype) for size in sizes[1:-1]]
        self.active = [np.empty((rows, size), bool) for size in sizes[1:-1]]

    def forward_backward(
        self, inputs: np.ndarray, targets: np.ndarray, gradient_scale: float = 1.0
    ) -> tuple[np.generic, int]:
        """Fill the gradient buffers for one minibatch; return its loss and correct count.

        The gradients are of the mean cross-entropy (no L2 term) times
        ``gradient_scale``. ``inputs`` must have the network's dtype.
        """
        count = len(inputs)
        weights = self.network.weights
        last = len(weights) - 1
        activation = inputs
        for layer, (weight, bias) in enumerate(zip(weights, self.network.biases)):
            output = self.outputs[layer][:count]
            np.matmul(activation, weight, out=output)
            output += bias
            if layer < last:
                np.maximum(output, 0, out=output)
                if self.keep < 1.0:
                    mask = self.masks[layer][:count]
                    # Inverted dropout: kept units are scaled by 1 / keep, so
                    # evaluation needs no rescaling.
                    self.rng.random(out=mask, dtype=self.dtype)
                    np.less(mask, self.keep, out=mask)
                    mask *= 1.0 / self.keep
                    output *= mask
            activation = output
        correct = int(np.count_nonzero(activation.argmax(axis=1) == targets))
        delta = self.deltas[last][:count]
        loss, _ = softmax_cross_entropy(activation, targets, gradient=delta)
        if gradient_scale != 1.0:
            delta *= gradient_scale
        for layer in range(last, -1, -1):
            below = inputs if layer == 0 else self.outputs[layer - 1][:count]
            np.matmul(below.T, delta, out=self.weight_gradients[layer])
            np.sum(delta, axis=0, out=self.bias_gradients[layer])
            if layer == 0:
                break
            next_delta = self.deltas[layer - 1][:count]
            np.matmul(delta, weights[layer].T, out=next_delta)
            if self.keep < 1.0:
                next_delta *= self.masks[layer - 1][:count]
            active = self.active[layer - 1][:count]
            np.greater(below, 0, out=active)
            next_delta *= active
            delta = next_delta
        return loss, correct

    def step(
        self, inputs: np.ndarray, targets: np.ndarray, learning_rate: float
    ) -> tuple[np.generic, int]:
        """Run one optimiser step on a minibatch; return its loss and correct count."""
        settings = self.settings
        learning_rate = float(learning_rate)
        sgd = settings.optimizer == "sgd"
        loss, correct = self.forward_backward(
            inputs, targets, gradient_scale=learning_rate if sgd else 1.0
        )
        gradients = [*self.weight_gradients, *self.bias_gradients]
        parameters = self.network.parameters
        weight_count = len(self.network.weights)

        if sgd:
            decay = learning_rate * float(settings.l2)
            for index, (parameter, gradient) in enumerate(zip(parameters, gradients)):
                velocity = self.first_moments[index]
                velocity *= float(settings.momentum)
                velocity += gradient
                if decay and index < weight_count:
                    np.multiply(parameter, decay, out=gradient)
                    velocity += gradient
                parameter -= velocity
            return loss, correct

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
    best_parameters = [p.copy() for p in network.parameters]
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


def balanced_subset(
    labels: np.ndarray, count: int, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Pick ``count`` row indices with the classes as equal as possible.

    Each class gets ``count // num_classes`` random rows; the remainder goes
    to randomly chosen classes. Raises BaselineError when a class has too few
    rows or ``count`` exceeds the split.
    """
    if not 1 <= count <= len(labels):
        raise BaselineError(
            f"--train-samples {count} is invalid; the training split has "
            f"{len(labels)} rows"
        )
    quotas = np.full(num_classes, count // num_classes)
    quotas[rng.choice(num_classes, count % num_classes, replace=False)] += 1
    order = rng.permutation(len(labels))
    chosen = []
    for label in range(num_classes):
        rows = order[labels[order] == label][: quotas[label]]
        if len(rows) < quotas[label]:
            raise BaselineError(
                f"class {label} has {len(rows)} training rows, fewer than the "
                f"{quotas[label]} that --train-samples {count} needs; lower it"
            )
        chosen.append(rows)
    return np.sort(np.concatenate(chosen))


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------

SERIES_COLOURS = {"train": (31, 119, 180), "validation": (255, 127, 14)}


def _draw_panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    title: str,
    series: dict[str, list[float]],
    font: ImageFont.ImageFont,
    best_epoch: int | None,
) -> None:
    """Draw one line chart (x = epoch) with axes, ticks and a legend in ``box``.

    A grey vertical line marks ``best_epoch`` (1-based), if given.
    """
    left, top, right, bottom = box
    plot_left, plot_top, plot_right, plot_bottom = (
        left + 60,
        top + 45,
        right - 15,
        bottom - 45,
    )
    values = [v for points in series.values() for v in points if math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    epochs = max(len(points) for points in series.values())

    def to_xy(index: int, value: float) -> tuple[float, float]:
        x_span = max(epochs - 1, 1)
        x = plot_left + (plot_right - plot_left) * index / x_span
        y = plot_bottom - (plot_bottom - plot_top) * (value - low) / (high - low)
        return x, y

    draw.text(
        ((left + right) / 2, top + 8), title, fill="black", font=font, anchor="mt"
    )
    draw.line(
        [(plot_left, plot_top), (plot_left, plot_bottom), (plot_right, plot_bottom)],
        fill="black",
        width=1,
    )
    for tick in range(5):
        value = low + (high - low) * tick / 4
        _, y = to_xy(0, value)
        draw.line([(plot_left - 4, y), (plot_left, y)], fill="black")
        draw.line([(plot_left + 1, y), (plot_right, y)], fill=(225, 225, 225))
        draw.text(
            (plot_left - 6, y), f"{value:.3g}", fill="black", font=font, anchor="rm"
        )
    tick_step = max(1, math.ceil(epochs / 10))
    for index in range(0, epochs, tick_step):
        x, _ = to_xy(index, low)
        draw.line([(x, plot_bottom), (x, plot_bottom + 4)], fill="black")
        draw.text(
            (x, plot_bottom + 6), str(index + 1), fill="black", font=font, anchor="mt"
        )
    draw.text(
        ((plot_left + plot_right) / 2, bottom - 14),
        "epoch",
        fill="black",
        font=font,
        anchor="mm",
    )
    if best_epoch is not None and 1 <= best_epoch <= epochs:
        x, _ = to_xy(best_epoch - 1, low)
        draw.line([(x, plot_top), (x, plot_bottom)], fill=(160, 160, 160), width=1)
        draw.text((x + 3, plot_top), "best", fill=(120, 120, 120), font=font)
    legend_x = plot_right - 200
    for name, points in series.items():
        colour = SERIES_COLOURS[name]
        line = [to_xy(i, v) for i, v in enumerate(points) if math.isfinite(v)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for x, y in line:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        legend_y = top + 30
        draw.line(
            [(legend_x, legend_y), (legend_x + 20, legend_y)], fill=colour, width=2
        )
        draw.text((legend_x + 25, legend_y), name, fill="black", font=font, anchor="lm")
        legend_x += 100


def plot_curves(
    history: Sequence[dict[str, float]], path: Path, best_epoch: int | None = None
) -> None:
    """Write a PNG with the loss and accuracy curves of training and validation."""
    font = ImageFont.load_default(size=12)
    image = Image.new("RGB", (1000, 400), "white")
    draw = ImageDraw.Draw(image)
    for offset, metric in ((0, "loss"), (500, "accuracy")):
        series = {
            split: [entry[f"{split}_{metric}"] for entry in history]
            for split in ("train", "validation")
        }
        box = (offset, 0, offset + 500, 400)
        _draw_panel(draw, box, metric, series, font, best_epoch)
    image.save(path, format="PNG")


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format rows as a plain text table with aligned columns."""
    cells = [list(map(str, header))] + [
        [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in cells
    )


# ---------------------------------------------------------------------------
# Experiments and the command line
# ---------------------------------------------------------------------------


def run_experiment(
    args: argparse.Namespace,
    settings: Hyperparameters,
    splits: dict[str, SplitArrays],
    class_names: Sequence[str],
    train_samples: int | None,
    output: Path,
) -> tuple[Network, dict]:
    """Train one network, evaluate it and write its outputs into ``output``."""
    rng = np.random.default_rng(settings.seed)
    train = splits["train"]
    if train_samples is not None:
        rows = balanced_subset(train.labels, train_samples, len(class_names), rng)
        train = SplitArrays(
            train.pixels[rows], train.labels[rows], train.input_range, train.fingerprint
        )
    layer_sizes = [IMAGE_PIXELS, *settings.hidden, len(class_names)]
    network = Network(layer_sizes, rng)
    logger.info(
        "training %s %s on %d images",
        args.model,
        "-".join(map(str, layer_sizes)),
        len(train.labels),
    )
    result = fit(network, settings, train, splits["validation"], rng)
    scores = {name: evaluate(network, splits[name]) for name in ("validation", "test")}

    output.mkdir(parents=True, exist_ok=True)
    network.save(output / "weights.npz")
    plot_curves(result.history, output / "curves.png", result.best_epoch)
    metrics = {
        "validation_accuracy": scores["validation"].accuracy,
        "test_accuracy": scores["test"].accuracy,
        "validation_loss": scores["validation"].loss,
        "test_loss": scores["test"].loss,
        "dataset": args.dataset,
        "config": args.config,
        "split_fingerprints": {
            name: split.fingerprint for name, split in splits.items()
        },
        "split_sizes": {
            "train": len(train.labels),
            "validation": scores["validation"].count,
            "test": scores["test"].count,
        },
        "input_range": train.input_range,
        "model": args.model,
        "layer_sizes": layer_sizes,
        "hyperparameters": asdict(settings),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "training_seconds": result.seconds,
        "class_names": list(class_names),
        "per_class_accuracy": {
            name: score.per_class_accuracy(class_names)
            for name, score in scores.items()
        },
        "confusion_matrix": {
            name: score.confusion.tolist() for name, score in scores.items()
        },
        "history": result.history,
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    rows = [
        [name]
        + [
            f"{acc:.3f}" if acc is not None else "-"
            for acc in score.per_class_accuracy(class_names).values()
        ]
        + [f"{score.accuracy:.4f}"]
        for name, score in scores.items()
    ]
    print(format_table(["split", *class_names, "all"], rows))
    print(f"wrote {output}")
    return network, metrics


def compare_configs(
    args: argparse.Namespace,
    network: Network,
    splits: dict[str, SplitArrays],
    input_range: str,
    num_classes: int,
) -> dict:
    """Evaluate a trained network on the raw and sanitized validation and test sets."""
    results = {}
    for config in CONFIGS:
        if config == args.config:
            evaluation_splits = {name: splits[name] for name in ("validation", "test")}
        else:
            loaded = load_config(args.dataset, config)
            evaluation_splits = {
                name: split_arrays(loaded, name, input_range, num_classes)[0]
                for name in ("validation", "test")
            }
        results[config] = {}
        for name, split in evaluation_splits.items():
            score = evaluate(network, split)
            results[config][f"{name}_accuracy"] = score.accuracy
            results[config][f"{name}_size"] = score.count
    report = {
        "dataset": args.dataset,
        "trained_on": args.config,
        "model": args.model,
        "results": results,
    }
    rows = [
        [
            config,
            values["validation_accuracy"],
            values["validation_size"],
            values["test_accuracy"],
            values["test_size"],
        ]
        for config, values in results.items()
    ]
    print(f"trained on {args.config}; accuracy on each configuration's splits:")
    print(format_table(["evaluated on", "validation", "rows", "test", "rows"], rows))
    (args.output / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def parse_sizes(text: str, option: str) -> list[int]:
    """Parse a comma-separated list of positive integers, such as ``1024,300``."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BaselineError(
            f"{option} {text!r} is invalid; give positive integers separated by commas"
        ) from None
    if any(size < 1 for size in sizes):
        raise BaselineError(
            f"{option} {text!r} is invalid; every size must be at least 1"
        )
    return sizes


def parse_train_samples(text: str) -> list[int | None]:
    """Parse ``--train-samples``: counts and ``all`` (None), comma-separated."""
    counts: list[int | None] = []
    for part in text.split(","):
        part = part.strip().lower()
        if part == "all":
            counts.append(None)
        else:
            counts.extend(parse_sizes(part, "--train-samples"))
    if not counts:
        raise BaselineError("--train-samples is empty; give counts such as 50,100,all")
    return counts


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser; defaults come from ``Hyperparameters``."""
    defaults = Hyperparameters()
    parser = argparse.ArgumentParser(
        description="Train a NumPy softmax-regression or MLP baseline on notMNIST.",
    )

    data = parser.add_argument_group("data and outputs")
    data.add_argument(
        "--dataset",
        default="notmnist",
        help="build folder, Hub id, or the name the build registered (default: notmnist)",
    )
    data.add_argument(
        "--config",
        choices=CONFIGS,
        default="sanitized",
        help="configuration to train on (default: sanitized)",
    )
    data.add_argument(
        "--output", type=Path, required=True, help="folder for the run's outputs"
    )
    data.add_argument(
        "--input-range",
        choices=INPUT_RANGES,
        default="auto",
        help="range of the image values before normalising to [-0.5, 0.5] "
        "(default: auto)",
    )

    experiment = parser.add_argument_group("model and experiment")
    experiment.add_argument(
        "--model",
        choices=("mlp", "logistic"),
        default="mlp",
        help="mlp, or logistic for softmax regression (default: mlp)",
    )
    experiment.add_argument(
        "--hidden",
        help="hidden layer sizes, comma-separated (default: "
        f"{','.join(map(str, defaults.hidden))}; not allowed with --model logistic)",
    )
    experiment.add_argument(
        "--train-samples",
        default="all",
        help="training rows to use, comma-separated counts or 'all'; several values "
        "train one network each into OUTPUT/train-N (default: all)",
    )
    experiment.add_argument(
        "--compare",
        action="store_true",
        help="also evaluate on the other configuration's validation and test splits "
        "and write compare.json",
    )

    training = parser.add_argument_group("training")
    training.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help=f"maximum epochs (default: {defaults.epochs})",
    )
    training.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"minibatch rows (default: {defaults.batch_size})",
    )
    training.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        default=defaults.optimizer,
        help="sgd with momentum, or adam (default: sgd)",
    )
    training.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"initial learning rate (default: {defaults.learning_rate} for sgd, "
        f"{ADAM_LEARNING_RATE} for adam)",
    )
    training.add_argument(
        "--momentum",
        type=float,
        default=defaults.momentum,
        help=f"SGD momentum (default: {defaults.momentum})",
    )
    training.add_argument(
        "--l2",
        type=float,
        default=defaults.l2,
        help="L2 coefficient on the weights, added to the gradient as l2 * w "
        f"(default: {defaults.l2})",
    )
    training.add_argument(
        "--dropout",
        type=float,
        default=None,
        help=f"drop probability of hidden units (default: {defaults.dropout}; "
        "logistic has no hidden units)",
    )
    training.add_argument(
        "--lr-decay",
        type=float,
        default=defaults.lr_decay,
        help=f"learning-rate factor per epoch (default: {defaults.lr_decay})",
    )
    training.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="stop after this many epochs without a better validation accuracy; "
        f"0 disables early stopping (default: {defaults.patience})",
    )
    training.add_argument(
        "--seed", type=int, default=defaults.seed, help="random seed (default: 0)"
    )
    training.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS threads (needs threadpoolctl; default: BLAS's own choice)",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Hyperparameters:
    defaults = Hyperparameters()
    if args.model == "logistic":
        if args.hidden:
            raise BaselineError(
                f"--hidden {args.hidden} conflicts with --model logistic, which has "
                "no hidden layers; drop --hidden or use --model mlp"
            )
        hidden: tuple[int, ...] = ()
    else:
        hidden = (
            tuple(parse_sizes(args.hidden, "--hidden"))
            if args.hidden
            else defaults.hidden
        )
    if args.lr is not None:
        learning_rate = args.lr
    else:
        sgd = args.optimizer == "sgd"
        learning_rate = defaults.learning_rate if sgd else ADAM_LEARNING_RATE
    dropout = args.dropout if args.dropout is not None else defaults.dropout
    settings = Hyperparameters(
        hidden=hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=learning_rate,
        momentum=args.momentum,
        optimizer=args.optimizer,
        l2=args.l2,
        dropout=dropout if hidden else 0.0,
        lr_decay=args.lr_decay,
        patience=args.patience,
        seed=args.seed,
    )
    settings.validate()
    return settings


def limit_threads(threads: int | None) -> contextlib.AbstractContextManager:
    """Return a context that limits BLAS to ``threads`` threads (None: no limit)."""
    if threads is None:
        return contextlib.nullcontext()
    if threads < 1:
        raise BaselineError(f"--threads {threads} is invalid; give at least 1")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise BaselineError(
            f"--threads {threads} needs threadpoolctl (pip install threadpoolctl); "
            f"or drop it and start with OPENBLAS_NUM_THREADS={threads}"
        ) from None
    return threadpool_limits(limits=threads, user_api="blas")


def load_training_splits(
    args: argparse.Namespace,
) -> tuple[dict[str, SplitArrays], list[str]]:
    """Load train, validation and test of ``--config``; return them and the classes.

    Raises BaselineError when a split is empty, because early stopping and
    the reported accuracies need rows in all three.
    """
    started = time.perf_counter()
    loaded = load_config(args.dataset, args.config)
    train, num_classes = split_arrays(loaded, "train", args.input_range)
    splits = {"train": train}
    for name in ("validation", "test"):
        splits[name] = split_arrays(loaded, name, train.input_range, num_classes)[0]
    for name, split in splits.items():
        if len(split.labels) == 0:
            raise BaselineError(
                f"the {name} split of {args.dataset!r} ({args.config}) is empty; "
                "rebuild the dataset with rows in every split"
            )
    logger.info(
        "loaded %s (%s) in %.1f s: %s; input range %s",
        args.dataset,
        args.config,
        time.perf_counter() - started,
        ", ".join(f"{name} {len(split.labels)}" for name, split in splits.items()),
        train.input_range,
    )
    return splits, loaded["train"].features["label"].names


def run(args: argparse.Namespace) -> None:
    """Run the experiments that ``args`` requests."""
    settings = settings_from_args(args)
    counts = parse_train_samples(args.train_samples)
    if args.compare and len(counts) > 1:
        raise BaselineError(
            f"--compare needs one --train-samples value, not {args.train_samples!r}"
        )
    with limit_threads(args.threads):
        splits, class_names = load_training_splits(args)
        summary = []
        for count in counts:
            output = args.output
            if len(counts) > 1:
                output = args.output / f"train-{'all' if count is None else count}"
            network, metrics = run_experiment(
                args, settings, splits, class_names, count, output
            )
            summary.append(
                {
                    "train_samples": metrics["split_sizes"]["train"],
                    "validation_accuracy": metrics["validation_accuracy"],
                    "test_accuracy": metrics["test_accuracy"],
                    "epochs_run": metrics["epochs_run"],
                }
            )
        if len(counts) > 1:
            rows = [list(entry.values()) for entry in summary]
            print(format_table(["train rows", "validation", "test", "epochs"], rows))
            (args.output / "sweep.json").write_text(
                json.dumps(summary, indent=2) + "\n"
            )
        if args.compare:
            input_range = splits["train"].input_range
            compare_configs(args, network, splits, input_range, len(class_names))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except BaselineError as error:
        logger.error("error: %s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
