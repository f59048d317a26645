"""Write prepared splits as Parquet shards in the layout the Hub serves.

Shards are deterministic: the same rows give byte-identical files with the
same pyarrow version, because rows keep their seeded order, the writer
settings are fixed and nothing time-dependent is written. Each file's schema
carries the ``datasets`` features (key ``huggingface``), so a reader that
ignores the dataset card still gets ``Image`` and ``ClassLabel``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_MAX_SHARD_BYTES = 64 * 2**20
ROW_GROUP_SIZE = 1_000


def parse_byte_size(text: str) -> int:
    """Parse a size such as ``64MB``, ``500KiB`` or ``1048576`` into bytes."""
    units = {
        "": 1, "B": 1,
        "KB": 10**3, "MB": 10**6, "GB": 10**9,
        "KIB": 2**10, "MIB": 2**20, "GIB": 2**30,
    }
    cleaned = text.strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMGIB")
    unit = cleaned[len(number):]
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError):
        raise ValueError(
            f"invalid size {text!r}: give bytes, or a number with KB, MB, GB, KiB, MiB or GiB"
        ) from None
    if value < 1:
        raise ValueError(f"invalid size {text!r}: it must be at least 1 byte")
    return int(value)


def shard_file_name(split: str, shard: int, num_shards: int) -> str:
    return f"{split}-{shard:05d}-of-{num_shards:05d}.parquet"


def features_metadata(features: datasets.Features) -> dict[bytes, bytes]:
    """Return the schema metadata that ``datasets`` reads its features from."""
    payload = {"info": {"features": features.to_dict()}}
    return {b"huggingface": json.dumps(payload, sort_keys=True).encode("utf-8")}


def write_split(
    table: pa.Table,
    features: datasets.Features,
    folder: Path,
    split: str,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> list[Path]:
    """Write one split as ``{split}-NNNNN-of-NNNNN.parquet`` shards of about
    ``max_shard_bytes`` each (by in-memory size), split at row boundaries.

    Returns the paths written, in order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    schema = features.arrow_schema.with_metadata(features_metadata(features))
    table = table.select(list(features)).cast(schema)
    num_shards = max(1, math.ceil(table.nbytes / max_shard_bytes))
    num_shards = min(num_shards, max(1, table.num_rows))
    rows_per_shard = math.ceil(table.num_rows / num_shards) if table.num_rows else 0

    paths = []
    for shard in range(num_shards):
        piece = table.slice(shard * rows_per_shard, rows_per_shard)
        path = folder / shard_file_name(split, shard, num_shards)
        pq.write_table(
            piece,
            path,
            row_group_size=ROW_GROUP_SIZE,
            compression="zstd",
            use_dictionary=["label"],
            write_statistics=True,
            write_page_index=False,
        )
        paths.append(path)
    return paths


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` to disk before it is swapped in."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        descriptor = os.open(root, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
