"""Pictures a person can check a build with: sample grids and near-duplicate pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .constants import CLASS_NAMES, IMAGE_SIDE

SCALE = 2  # each 28x28 image is drawn at twice its size
GAP = 4
LABEL_WIDTH = 28
TITLE_HEIGHT = 18
BACKGROUND = 96  # mid gray, so black and white glyph boxes both stand out
TEXT = 255


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _paste(canvas: Image.Image, pixels: np.ndarray, x: int, y: int) -> None:
    tile = Image.fromarray(pixels, mode="L").resize(
        (IMAGE_SIDE * SCALE, IMAGE_SIDE * SCALE), Image.Resampling.NEAREST
    )
    canvas.paste(tile, (x, y))


def sample_grid(
    splits: dict[str, tuple[np.ndarray, np.ndarray]], per_letter: int = 8
) -> Image.Image:
    """Draw ``per_letter`` images of each letter (rows) for each split (blocks).

    ``splits`` maps a split name to ``(pixels, labels)``, pixels (N, 28, 28)
    uint8 in the order to show them. A letter with fewer images leaves blanks.
    """
    tile = IMAGE_SIDE * SCALE
    block_width = per_letter * (tile + 1) + GAP * 3
    width = LABEL_WIDTH + block_width * len(splits)
    height = TITLE_HEIGHT + len(CLASS_NAMES) * (tile + 1)
    canvas = Image.new("L", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()

    for row, letter in enumerate(CLASS_NAMES):
        draw.text((8, TITLE_HEIGHT + row * (tile + 1) + tile // 3), letter, fill=TEXT, font=font)
    for block, (split, (pixels, labels)) in enumerate(splits.items()):
        left = LABEL_WIDTH + block * block_width
        draw.text((left, 3), split, fill=TEXT, font=font)
        for row in range(len(CLASS_NAMES)):
            chosen = np.flatnonzero(labels == row)[:per_letter]
            for column, image in enumerate(chosen):
                _paste(canvas, pixels[image], left + column * (tile + 1), TITLE_HEIGHT + row * (tile + 1))
    return canvas


def near_duplicate_grid(
    examples: dict[int, list[tuple[np.ndarray, np.ndarray, str]]],
    max_distance: int,
    method: str,
) -> Image.Image:
    """Draw example pairs per Hamming distance, one row per distance.

    ``examples`` maps a distance to pairs ``(pixels_a, pixels_b, caption)``.
    Rows past ``max_distance`` are marked as past the hash threshold; their
    captions end in "linked" where another comparison of the rule joined the
    pair anyway.
    """
    tile = IMAGE_SIDE * SCALE
    pairs_per_row = max((len(v) for v in examples.values()), default=0)
    pair_width = 2 * tile + 3 + GAP * 3
    label_width = 150
    width = label_width + max(1, pairs_per_row) * pair_width
    row_height = tile + 14
    height = TITLE_HEIGHT + max(1, len(examples)) * row_height
    canvas = Image.new("L", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _font()
    draw.text((4, 3), f"{method} pairs by Hamming distance; near duplicate: <= {max_distance}", fill=TEXT, font=font)

    for row, distance in enumerate(sorted(examples)):
        top = TITLE_HEIGHT + row * row_height
        verdict = "near duplicate" if distance <= max_distance else "past threshold"
        draw.text((4, top + tile // 3), f"d = {distance}: {verdict}", fill=TEXT, font=font)
        for column, (a, b, caption) in enumerate(examples[distance]):
            left = label_width + column * pair_width
            _paste(canvas, a, left, top)
            _paste(canvas, b, left + tile + 2, top)
            draw.text((left, top + tile), caption, fill=TEXT, font=font)
    return canvas


def save_png(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
