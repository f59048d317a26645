"""Read a loaded notMNIST split as NumPy arrays, decoding PNGs in batches.

``datasets`` decodes an ``Image`` column one PNG at a time through Pillow.
These helpers read the PNG bytes as stored and decode each batch with
``fastpng.decode_png_batch``, whose pixels equal ``datasets``' own decode
followed by the package's canonical conversion to 8-bit gray:

    from datasets import load_dataset
    from notmnist_ds.numpy_view import load_numpy, numpy_view

    train = load_dataset("path/to/build")["train"]
    for batch in numpy_view(train).iter(batch_size=1000):
        batch["image"]  # uint8 (1000, 28, 28)
        batch["label"]  # int64 (1000,)

    images, labels = load_numpy(train)  # the whole split at once

Only embedded PNG bytes are decoded. A row that stores just a file path, as
``Image`` columns of local image folders can, raises ImageRejected that names
the path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import datasets
import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from .constants import IMAGE_SIDE
from .fastpng import BatchImageRejected, decode_png_batch
from .images import ImageRejected
from .report import SkipReason

IMAGE_COLUMN = "image"
LABEL_COLUMN = "label"

# Rows read from Arrow per step by load_numpy. decode_png_batch works in
# chunks of 4,096 whatever the batch, so this only bounds the PNG bytes held at
# once (about 9 MB). 2,048 to 32,768 measured the same within noise.
LOAD_BATCH_ROWS = 16_384


def numpy_view(
    dataset: datasets.Dataset | datasets.DatasetDict,
    columns: Sequence[str] | None = None,
) -> datasets.Dataset | datasets.DatasetDict:
    """Return the dataset with every batch formatted as NumPy arrays.

    The ``image`` column is read as stored PNG bytes and decoded in batches
    to uint8 (N, 28, 28). Every other column becomes ``np.asarray`` of its
    values, so a ClassLabel ``label`` is int64. ``columns`` limits the output
    to those columns. The result is an ordinary ``datasets.Dataset`` (or a
    DatasetDict of them) with a transform set. ``.iter(batch_size=...)``,
    slicing and ``view[i]`` all decode, and ``view[i]["image"]`` is (28, 28).

    After ``shuffle`` or ``select``, ``datasets`` gathers the rows of each
    batch one by one, so the view iterated at 40 to 60 percent of its
    in-order rate (``benchmarks/results/load.md``). To train on shuffled data,
    decode once with ``load_numpy`` and shuffle the arrays.

    The view is cheap to make, and the input dataset is not changed. Raises
    TypeError for anything but a Dataset or DatasetDict (a streaming
    IterableDataset, say), and ValueError when there is no ``image`` column of
    feature type
    ``datasets.Image`` or a requested column is missing. Decoding raises
    ImageRejected for an image that ``images.decode_image`` rejects.
    """
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict(
            {split: numpy_view(part, columns) for split, part in dataset.items()}
        )
    check_image_column(dataset)
    if columns is not None:
        missing = [name for name in columns if name not in dataset.column_names]
        if missing:
            raise ValueError(
                f"columns {missing} are not in the dataset (columns: "
                f"{dataset.column_names}); pass names from that list"
            )
        columns = list(columns)
    stored = dataset.cast_column(IMAGE_COLUMN, datasets.Image(decode=False))
    return stored.with_transform(format_batch, columns=columns)


def format_batch(batch: dict[str, list]) -> dict[str, np.ndarray]:
    """Turn one batch of Python values into arrays, decoding the image column."""
    arrays = {}
    for name, values in batch.items():
        if name == IMAGE_COLUMN:
            blobs = [
                stored_png_bytes(value, position)
                for position, value in enumerate(values)
            ]
            arrays[name] = decode_png_batch(blobs)
        else:
            arrays[name] = np.asarray(values)
    return arrays


def stored_png_bytes(value: dict | None, position: int) -> bytes:
    """Return the PNG bytes of one stored ``Image`` value ``{"bytes", "path"}``."""
    if value is None:
        raise BatchImageRejected(SkipReason.EMPTY, "the row has no image", position)
    blob = value["bytes"]
    if blob is None:
        raise missing_bytes_error(value.get("path"), position)
    return blob


def missing_bytes_error(path: str | None, position: int) -> ImageRejected:
    if path:
        detail = (
            f"the row stores only the file path {path!r}, no PNG bytes; "
            "decode it with dataset.with_format('numpy'), or embed the images "
            "(a notmnist build always does)"
        )
    else:
        detail = "the row has neither PNG bytes nor a path"
    return BatchImageRejected(SkipReason.EMPTY, detail, position)


def load_numpy(
    dataset: datasets.Dataset, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole split into ``(images, labels)``.

    Returns uint8 images of shape (N, 28, 28) and int64 labels of shape (N,),
    in the dataset's row order (``select`` and ``shuffle`` are respected).
    The image bytes are read straight from the Arrow table, which skips the
    per-row Python objects of a transform. Raises TypeError for a
    DatasetDict or an IterableDataset, ValueError when the ``image`` or ``label`` column is missing
    or a label is null, and ImageRejected (naming the row) for an image that
    ``images.decode_image`` rejects.
    """
    if isinstance(dataset, datasets.DatasetDict):
        raise TypeError(
            f"load_numpy takes one split, got a DatasetDict with splits "
            f"{list(dataset)}; pass one of them, e.g. dataset['train']"
        )
    check_image_column(dataset)
    if LABEL_COLUMN not in dataset.column_names:
        raise ValueError(
            f"the dataset has no {LABEL_COLUMN!r} column (columns: "
            f"{dataset.column_names}); load_numpy needs a notMNIST split"
        )

    count = dataset.num_rows
    images = np.empty((count, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    labels = np.empty(count, np.int64)
    table_view = dataset.select_columns([IMAGE_COLUMN, LABEL_COLUMN]).with_format(
        "arrow"
    )
    batches = table_view.iter(batch_size=LOAD_BATCH_ROWS)
    total = math.ceil(count / LOAD_BATCH_ROWS)
    start = 0
    for table in tqdm(
        batches,
        total=total,
        desc="decoding",
        unit="batch",
        disable=not progress or total < 4,
    ):
        stop = start + table.num_rows
        label_column = table.column(LABEL_COLUMN)
        if label_column.null_count:
            raise ValueError(
                f"rows {start}..{stop - 1} include {label_column.null_count} null "
                "labels; drop those rows before load_numpy"
            )
        labels[start:stop] = label_column.to_numpy()
        try:
            images[start:stop] = decode_png_batch(
                arrow_png_bytes(table.column(IMAGE_COLUMN))
            )
        except BatchImageRejected as error:
            row = start + error.position
            raise ImageRejected(
                error.reason, f"row {row}: {error.image_detail}"
            ) from error
        start = stop
    return images, labels


def arrow_png_bytes(column: pa.ChunkedArray) -> list[bytes]:
    """Return the PNG bytes of an Arrow ``Image`` column, one entry a row.

    Raises BatchImageRejected for a null row or a row without bytes.
    """
    images = column.combine_chunks()
    blobs = images.field("bytes").to_pylist()
    if images.null_count or images.field("bytes").null_count:
        paths = images.field("path").to_pylist()
        null_rows = images.is_null().to_pylist()
        for position, blob in enumerate(blobs):
            if null_rows[position]:
                raise BatchImageRejected(
                    SkipReason.EMPTY, "the row has no image", position
                )
            if blob is None:
                raise missing_bytes_error(paths[position], position)
    return blobs


def check_image_column(dataset: datasets.Dataset) -> None:
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"expected a datasets.Dataset, got {type(dataset).__name__}; load the "
            "split without streaming=True"
        )
    feature = dataset.features.get(IMAGE_COLUMN)
    if not isinstance(feature, datasets.Image):
        # The column's feature is part of the data, so this is a ValueError.
        raise ValueError(  # noqa: TRY004
            f"the dataset's {IMAGE_COLUMN!r} column is {feature!r}, expected a "
            f"datasets.Image column of PNG images (columns: {dataset.column_names}); "
            "load a notMNIST build"
        )
