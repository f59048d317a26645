"""Decode member bytes into the canonical image: 28x28, mode L, uint8.

The published archives hold 8-bit grayscale PNGs, black background (0) and
white ink (255). Re-hosted copies may hold other PNG modes, so every image goes
through one conversion rule, `to_canonical_pixels`:

- ``L``: as stored. ``1``: 0 or 255.
- ``I;16`` and other 16-bit gray: scaled to 8 bits, ``round(v / 257)``.
- ``RGB``: ITU-R BT.601 luma, as Pillow's ``convert("L")``.
- ``LA``, ``RGBA``, ``P``, ``PA``, gray or RGB with a transparent colour: the
  gray value composited over the black background, so transparent pixels
  become background: ``round(gray * alpha / 255)``.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
from PIL import Image

from .constants import IMAGE_SHAPE, IMAGE_SIDE
from .report import SkipReason

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageRejected(ValueError):
    """Member bytes that do not give a canonical image; carries the skip reason."""

    def __init__(self, reason: SkipReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def read_png_header(data: bytes) -> tuple[int, int, int, int]:
    """Return ``(width, height, bit_depth, color_type)`` from a PNG's IHDR chunk.

    Raises ImageRejected when the bytes are not a PNG or the header is cut.
    """
    if not data:
        raise ImageRejected(SkipReason.EMPTY, "0 bytes")
    if not data.startswith(PNG_SIGNATURE):
        raise ImageRejected(
            SkipReason.NOT_PNG, f"starts with {data[:8]!r}, not the PNG signature"
        )
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageRejected(SkipReason.UNDECODABLE, "PNG header (IHDR) missing or cut")
    width, height, bit_depth, color_type = struct.unpack(">IIBB", data[16:26])
    return width, height, bit_depth, color_type


def decode_image(data: bytes) -> tuple[np.ndarray, bool]:
    """Decode PNG bytes into a (28, 28) uint8 array.

    Returns ``(pixels, converted)``, where ``converted`` is True when the PNG
    was not already 8-bit grayscale without transparency, so that its stored
    bytes are not the canonical image. The size is checked from the header
    before any pixel is decoded, so a PNG that declares a huge canvas costs
    nothing. Raises ImageRejected with the reason for any unusable image.
    """
    width, height, _, _ = read_png_header(data)
    if (width, height) != (IMAGE_SIDE, IMAGE_SIDE):
        raise ImageRejected(
            SkipReason.WRONG_SIZE, f"{width}x{height} pixels, expected 28x28"
        )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                image.load()
                converted = image.mode != "L" or "transparency" in image.info
                pixels = to_canonical_pixels(image)
    except ImageRejected:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as error:
        raise ImageRejected(SkipReason.UNDECODABLE, f"{type(error).__name__}: {error}")
    except Image.DecompressionBombError as error:  # pragma: no cover - size checked above
        raise ImageRejected(SkipReason.WRONG_SIZE, str(error))

    if pixels.shape != IMAGE_SHAPE:
        raise ImageRejected(
            SkipReason.WRONG_SIZE, f"decoded to {pixels.shape}, expected 28x28"
        )
    return pixels, converted


def to_canonical_pixels(image: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image to uint8 gray by the module's one rule."""
    mode = image.mode
    if "transparency" in image.info and mode in {"L", "RGB", "P"}:
        image = image.convert("RGBA") if mode != "L" else image.convert("LA")
        mode = image.mode

    if mode == "L":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        wide = np.asarray(image, dtype=np.int64)
        wide = np.clip(wide, 0, 65535)
        return ((wide + 128) // 257).astype(np.uint8)
    if mode in {"P", "PA"}:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in {"LA", "La", "RGBA", "RGBa"}:
        if mode in {"La", "RGBa"}:
            image = image.convert(mode.upper())
        gray = np.asarray(image.convert("L"), dtype=np.uint32)
        alpha = np.asarray(image.getchannel("A"), dtype=np.uint32)
        return ((gray * alpha + 127) // 255).astype(np.uint8)
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode canonical pixels as an 8-bit grayscale PNG (deterministic bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
