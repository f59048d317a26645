"""Read a notMNIST build's splits into float32 training arrays.

Images become float32 rows of 784 values in [-0.5, 0.5], computed as
``(x - 127.5) / 255`` from 0..255 intensities, and labels become int64 class
indices checked against the ``label`` column's ClassLabel.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from ..constants import IMAGE_PIXELS
from .errors import BaselineError
from .png import decode_png_batch

logger = logging.getLogger(__name__)

CONFIGS = ("sanitized", "raw")
INPUT_RANGES = ("auto", "uint8", "unit", "centered")
DTYPE = np.float32

# Rows decoded per chunk: bounds the memory of the decompressed PNG rows
# (about 27 MB) while keeping NumPy's per-call overhead small.
DECODE_CHUNK = 32_768


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


def load_training_splits(
    dataset: str, config: str, input_range: str = "auto"
) -> tuple[dict[str, SplitArrays], list[str]]:
    """Load train, validation and test of ``config``; return them and the classes.

    ``input_range`` applies to the training split. Validation and test take
    the range detected on it, so all three are normalised alike. Raises
    BaselineError when a split is empty, because early stopping and the
    reported accuracies need rows in all three.
    """
    started = time.perf_counter()
    loaded = load_config(dataset, config)
    train, num_classes = split_arrays(loaded, "train", input_range)
    splits = {"train": train}
    for name in ("validation", "test"):
        splits[name] = split_arrays(loaded, name, train.input_range, num_classes)[0]
    for name, split in splits.items():
        if len(split.labels) == 0:
            raise BaselineError(
                f"the {name} split of {dataset!r} ({config}) is empty; "
                "rebuild the dataset with rows in every split"
            )
    logger.info(
        "loaded %s (%s) in %.1f s: %s; input range %s",
        dataset,
        config,
        time.perf_counter() - started,
        ", ".join(f"{name} {len(split.labels)}" for name, split in splits.items()),
        train.input_range,
    )
    return splits, loaded["train"].features["label"].names
