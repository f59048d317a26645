"""Decode member bytes into the canonical image: 28x28, mode L, uint8.

The published archives hold 8-bit grayscale PNGs, black background (0) and
white ink (255). Re-hosted copies may hold other PNG modes, so every image goes
through one conversion rule, `to_canonical_pixels`:

- 8-bit gray (``L``): as stored. 1-, 2- and 4-bit gray: scaled to 0..255 as
  PNG defines it, so 1-bit gives 0 or 255, 2-bit ``v * 85``, 4-bit ``v * 17``.
- 16-bit gray (``I;16``): ``round(v / 257)``.
- ``RGB``: ITU-R BT.601 luma, ``round(0.299 R + 0.587 G + 0.114 B)``, as
  Pillow's ``convert("L")`` computes it.
- ``LA``, ``RGBA``, and palette images with alpha: the gray value (luma for
  colour) composited over the black background, ``round(gray * alpha / 255)``,
  so transparent pixels become background.
- Gray or RGB with a transparent colour (a tRNS chunk): pixels of exactly that
  colour become background (0), and the others follow the rule of their mode.
- 16-bit colour (RGB, RGBA, LA): Pillow keeps the high byte of each sample
  (``v >> 8``), then the rule of the mode applies.
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
GRAY, RGB = 0, 2  # PNG colour types that may carry a transparent colour
INTERLACE_OFFSET = 28  # of the IHDR interlace method byte, from the file start
GRAY_16_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


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
    was not already 8-bit, non-interlaced grayscale without transparency, so
    that its stored bytes are not the canonical image. The size is checked from the header
    before any pixel is decoded, so a PNG that declares a huge canvas costs
    nothing. Raises ImageRejected with the reason for any unusable image.
    """
    width, height, bit_depth, color_type = read_png_header(data)
    if (width, height) != (IMAGE_SIDE, IMAGE_SIDE):
        raise ImageRejected(
            SkipReason.WRONG_SIZE, f"{width}x{height} pixels, expected 28x28"
        )

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                image.load()
                transparent = transparent_colour(data, color_type, bit_depth)
                converted = (
                    image.mode != "L"
                    or bit_depth != 8
                    or data[INTERLACE_OFFSET] != 0
                    or "transparency" in image.info
                    or transparent is not None
                )
                pixels = to_canonical_pixels(image, transparent)
    except ImageRejected:
        raise
    except Image.UnidentifiedImageError:
        # Pillow's message names the BytesIO object and its memory address,
        # which would make the skip report differ from run to run.
        raise ImageRejected(
            SkipReason.UNDECODABLE,
            "Pillow cannot open it as a PNG: an invalid header field or chunk",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as error:
        raise ImageRejected(SkipReason.UNDECODABLE, f"{type(error).__name__}: {error}")
    except Image.DecompressionBombError as error:  # pragma: no cover - size checked above
        raise ImageRejected(SkipReason.WRONG_SIZE, str(error))

    if pixels.shape != IMAGE_SHAPE:
        raise ImageRejected(
            SkipReason.WRONG_SIZE, f"decoded to {pixels.shape}, expected 28x28"
        )
    return pixels, converted


def transparent_colour(
    data: bytes, color_type: int, bit_depth: int
) -> tuple[int, ...] | None:
    """Return the tRNS colour of a gray or RGB PNG in the pixel values Pillow
    decodes to, or None when there is none.

    Pillow stores the tRNS samples as written, which does not match its pixel
    values for 2- and 4-bit gray (scaled to 0..255) or 16-bit RGB (cut to the
    high byte), so the chunk is read here. Chunks after the first IDAT are not
    searched, because tRNS must come before it.
    """
    if color_type not in (GRAY, RGB):
        return None
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind in (b"IDAT", b"IEND"):
            return None
        payload = data[offset + 8 : offset + 8 + length]
        if kind == b"tRNS":
            samples = len(payload) // 2
            if samples < (1 if color_type == GRAY else 3):
                return None
            values = struct.unpack(f">{samples}H", payload[: 2 * samples])
            if color_type == GRAY:
                if bit_depth < 8:
                    sample = values[0] & ((1 << bit_depth) - 1)
                    return (sample * (255 // ((1 << bit_depth) - 1)),)
                return (values[0],)
            if bit_depth == 16:
                # NOTE: Pillow keeps only the high byte of 16-bit RGB, so a
                # colour that differs from the key in its low bytes matches too.
                return tuple(v >> 8 for v in values[:3])
            return tuple(values[:3])
        offset += 12 + length
    return None


def to_canonical_pixels(
    image: Image.Image, transparent: tuple[int, ...] | None = None
) -> np.ndarray:
    """Convert a loaded Pillow image to uint8 gray by the module's one rule.

    ``transparent`` is the transparent colour of a gray or RGB image in its
    decoded values (see `transparent_colour`). When it is None, the image's
    own ``info["transparency"]`` is used, which is exact for 8-bit images only.
    """
    mode = image.mode
    if mode in {"P", "PA"}:
        # Pillow applies the palette's alpha (tRNS) in this conversion.
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in {"LA", "La", "RGBA", "RGBa"}:
        if mode in {"La", "RGBa"}:
            image = image.convert(mode.upper())
        gray = np.asarray(image.convert("L"), dtype=np.uint32)
        alpha = np.asarray(image.getchannel("A"), dtype=np.uint32)
        return ((gray * alpha + 127) // 255).astype(np.uint8)

    if mode in GRAY_16_MODES:
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        gray = ((values + 128) // 257).astype(np.uint8)
    elif mode in {"1", "L", "RGB"}:
        values = np.asarray(image.convert("L") if mode == "1" else image)
        gray = np.asarray(image.convert("L"), dtype=np.uint8).copy()
    else:
        return np.asarray(image.convert("L"), dtype=np.uint8).copy()

    if transparent is None and "transparency" in image.info:
        stored = image.info["transparency"]
        transparent = stored if isinstance(stored, tuple) else (stored,)
    if transparent is not None and len(transparent) == (3 if values.ndim == 3 else 1):
        key = np.asarray(transparent)
        if values.ndim == 3:
            hidden = (values == key).all(axis=-1)
        else:
            hidden = values == key[0]
        gray[hidden] = 0
    return gray


def encode_png(pixels: np.ndarray) -> bytes:
    """Encode canonical pixels as an 8-bit grayscale PNG (deterministic bytes)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
