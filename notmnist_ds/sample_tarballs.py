"""Write notMNIST-layout tarballs from images stored in the MNIST IDX format.

The full archives are 250 MB and not always reachable, so tests, benchmarks and
first runs use archives made from a real sample: the same folder layout, the
same base64 file names, and a few empty PNGs like the published ones contain.
"""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from .constants import CLASS_NAMES, IMAGE_SIDE, LARGE, SMALL, Tarball

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


def read_idx(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read gzip-compressed IDX3 images and IDX1 labels.

    Returns ``(pixels, labels)``: uint8 arrays of shape (N, 28, 28) and (N,).
    Raises ValueError, naming the file, when a file is not gzip, a header is
    not the IDX header expected, the data is shorter or longer than the
    header describes, or a label is not a letter index 0 to 9.
    """
    image_bytes = _read_gzip(images_path)
    label_bytes = _read_gzip(labels_path)
    if len(image_bytes) < 16 or len(label_bytes) < 8:
        raise ValueError(
            f"{images_path if len(image_bytes) < 16 else labels_path}: too short "
            "for an IDX header; use the sample's images-idx3-ubyte.gz and "
            "labels-idx1-ubyte.gz"
        )

    magic, count, rows, cols = np.frombuffer(image_bytes[:16], ">u4")
    if magic != IDX_IMAGES_MAGIC or (rows, cols) != (IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(
            f"{images_path}: not an IDX3 file of 28x28 images "
            f"(magic {magic:#010x}, shape {rows}x{cols})"
        )
    label_magic, label_count = np.frombuffer(label_bytes[:8], ">u4")
    if label_magic != IDX_LABELS_MAGIC or label_count != count:
        raise ValueError(
            f"{labels_path}: not an IDX1 file of {count} labels "
            f"(magic {label_magic:#010x}, count {label_count})"
        )

    expected = {images_path: 16 + int(count) * rows * cols, labels_path: 8 + int(count)}
    for path, data in ((images_path, image_bytes), (labels_path, label_bytes)):
        if len(data) != expected[path]:
            raise ValueError(
                f"{path}: contains {len(data):,} bytes but its header describes "
                f"{expected[path]:,}; the file is truncated or padded, so get it again"
            )
    pixels = np.frombuffer(image_bytes, np.uint8, offset=16).reshape(count, rows, cols)
    labels = np.frombuffer(label_bytes, np.uint8, offset=8)
    invalid = np.flatnonzero(labels >= len(CLASS_NAMES))
    if len(invalid):
        raise ValueError(
            f"{labels_path}: label {int(labels[invalid[0]])} of image "
            f"{int(invalid[0])} is not a letter index 0 to {len(CLASS_NAMES) - 1} "
            f"({len(invalid)} such labels)"
        )
    return pixels.copy(), labels.copy()


def _read_gzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (gzip.BadGzipFile, EOFError) as error:
        raise ValueError(f"{path}: not a complete gzip file ({error})") from error


def font_file_name(index: int) -> str:
    """Invent a font file name for a sample image, which carries none."""
    styles = ("Regular", "Bold", "Italic", "BoldItalic")
    return f"Sample Font {index // 4:05d} {styles[index % 4]}.ttf"


def member_name(font: str) -> str:
    """Return the file name notMNIST gives the render of ``font``."""
    return base64.b64encode(font.encode("utf-8")).decode("ascii") + ".png"


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode one 28x28 uint8 image as a grayscale PNG."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def add_member(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_315_000_000  # fixed, so the same input gives the same archive
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def write_tarball(
    path: Path,
    tarball: Tarball,
    pixels: np.ndarray,
    labels: np.ndarray,
    first_font_index: int = 0,
    empty_members: dict[str, int] | None = None,
) -> list[str]:
    """Write ``pixels`` as a notMNIST-layout tar.gz at ``path``.

    ``empty_members`` maps a letter to how many zero-byte PNGs to add to its
    folder, as the published archives have. Returns the member paths written,
    relative to the archive's root folder, in archive order.
    """
    empty_members = empty_members or {}
    written: list[str] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0
    ) as gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for letter_id, letter in enumerate(CLASS_NAMES):
            indices = np.flatnonzero(labels == letter_id)
            for index in indices:
                font = font_file_name(first_font_index + int(index))
                relative = f"{letter}/{member_name(font)}"
                add_member(archive, f"{tarball.root}/{relative}", encode_png(pixels[index]))
                written.append(relative)
            for k in range(empty_members.get(letter, 0)):
                font = f"Damaged Font {letter}{k}.ttf"
                relative = f"{letter}/{member_name(font)}"
                add_member(archive, f"{tarball.root}/{relative}", b"")
                written.append(relative)
    return written


def write_sample_tarballs(
    sample_dir: Path,
    output_dir: Path,
    small_fraction: float = 0.2,
) -> dict[str, Path]:
    """Split an IDX sample into a large and a small notMNIST-layout tarball.

    The first ``1 - small_fraction`` of each letter's images (in sample order)
    go to ``notMNIST_large.tar.gz``, the rest to ``notMNIST_small.tar.gz``.
    Each archive also gets zero-byte PNGs: two in the large one (letters A and
    D) and one in the small one (letter F). Returns the paths by archive name.
    """
    pixels, labels = read_idx(
        sample_dir / "images-idx3-ubyte.gz", sample_dir / "labels-idx1-ubyte.gz"
    )
    to_small = np.zeros(len(labels), dtype=bool)
    for letter_id in range(len(CLASS_NAMES)):
        indices = np.flatnonzero(labels == letter_id)
        cut = int(round(len(indices) * (1.0 - small_fraction)))
        to_small[indices[cut:]] = True

    large_path = output_dir / LARGE.file_name
    small_path = output_dir / SMALL.file_name
    write_tarball(
        large_path,
        LARGE,
        pixels[~to_small],
        labels[~to_small],
        first_font_index=0,
        empty_members={"A": 1, "D": 1},
    )
    write_tarball(
        small_path,
        SMALL,
        pixels[to_small],
        labels[to_small],
        first_font_index=len(labels),
        empty_members={"F": 1},
    )
    return {LARGE.name: large_path, SMALL.name: small_path}
