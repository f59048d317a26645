"""Write a full-size synthetic notMNIST with planted exact and near duplicates.

The published archives are 247 MB and not always reachable, so scale benchmarks
and the duplicate-detection scoring use this stand-in. It writes
``notMNIST_large.tar.gz`` (529,119 PNG members) and ``notMNIST_small.tar.gz``
(18,726) in the published layout: one folder a letter, each member named after
the base64 of an invented font file name, every font rendered in every letter.
The five unreadable large members and two unreadable small members are
reproduced under their published names: six zero-byte files and one file that
is not an image at all.

Every readable image starts from one of the distinct real glyphs of the
8,000-image sample. Three kinds of image are written:

* fresh: a heavy but glyph-preserving perturbation of a real glyph (affine
  transform, stroke thickening or thinning, gamma), so fresh images from the
  same glyph are mostly not near duplicates of each other;
* exact: the same PNG bytes as a fresh image under another font name, usually
  a whole font copied (all ten letters), sometimes a single letter;
* near: a light perturbation of a fresh image (a one-pixel shift, a few noised
  or inverted pixels, intensity scaling, or two of these).

``planted.parquet`` lists every planted duplicate: member path, the member path
of its original, the kind (exact or near), the perturbation and the phash
Hamming distance to the original. Exact duplicates that arise by chance (for
example the renders of an all-white glyph) are listed too, with ``planted``
false. Near duplicates that arise by chance are not listed, and ``--verify``,
which re-reads the tarballs and measures what they contain, estimates how
many members have one.

The same seed gives byte-identical tarballs with the same numpy, Pillow and zlib
versions, whatever the number of processes.

    python benchmarks/make_scale_tarballs.py --output benchmarks/out/scale --seed 0
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import logging
import math
import os
import resource
import sys
import tarfile
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import imagehash
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from notmnist_ds.constants import CLASS_NAMES, IMAGE_SIDE, LARGE, SMALL, Tarball
from notmnist_ds.sample_tarballs import encode_png, member_name, read_idx

logger = logging.getLogger("make_scale_tarballs")

REAL_SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_SAMPLE_DIR = REAL_SAMPLE_DIR / "notmnist-real-sample"
MANIFEST_NAME = "planted.parquet"
GZIP_LEVEL = 6  # the gzip tool's default
MEMBER_MTIME = 1_315_000_000  # September 2011, when notMNIST was published
NUM_LETTERS = len(CLASS_NAMES)
MIN_MEMBERS = 2000  # fewer leaves too few fonts to plant whole-font copies
# The reports count two images as near duplicates when their phash Hamming
# distance is at most this. Unrelated images differ in about 32 of the 64 bits.
NEAR_THRESHOLD = 4

# Slot kinds. A slot is one (archive, letter, font); absent slots have no member.
FRESH, EXACT, NEAR, EMPTY, NOT_PNG = range(5)

# Exact duplicate groups (an original and its copies) have 2 to 5 members.
GROUP_SIZES = np.array([2, 3, 4, 5])
GROUP_SIZE_WEIGHTS = np.array([0.75, 0.17, 0.06, 0.02])
# Share of the exact and near targets planted as whole-font copies. The rest
# are single-letter copies.
FONT_LEVEL_SHARE = {EXACT: 0.8, NEAR: 0.7}

# Fresh perturbation ranges.
SCALE_RANGE = (0.85, 1.15)
ANISOTROPY_MAX = 0.12  # x scale times (1 + a), y scale times (1 - a)
ROTATION_DEGREES_MAX = 10.0
SHEAR_MAX = 0.15
SHIFT_PIXELS_MAX = 2.0
STROKE_BLEND_RANGE = (0.2, 0.5)  # weight of a 3x3 max (thicken) or min (thin) filter
GAMMA_RANGE = (0.7, 1.4)
GAMMA_LEVELS = 64  # log-spaced gammas over GAMMA_RANGE, applied as lookup tables

# Light perturbations of near duplicates, and how often each is chosen.
LIGHT_KINDS = ("shift", "noise", "flip", "intensity", "combo")
LIGHT_WEIGHTS = np.array([0.10, 0.25, 0.20, 0.25, 0.20])

NAME_SYLLABLES = (
    "al ar ba bel co da del en fa ga hel in ka lin lo ma mer mi na nor "
    "or pa per qua ra ri ro sa sel ta ter ti to va ver vi wal xe za zo"
).split()
NAME_QUALIFIERS = (
    "", "", "", "Sans", "Serif", "Mono", "Script", "Display", "Text", "Gothic",
    "Poster", "Old Style", "Condensed", "BT", "EF", "Pro", "Std",
)  # fmt: skip
NAME_STYLES = (
    "", "", "Regular", "Bold", "Italic", "BoldItalic", "Light", "Medium",
    "SemiBold", "Black", "Oblique", "BoldOblique",
)  # fmt: skip
NAME_EXTENSIONS = (".ttf", ".otf", ".pfb")
NAME_EXTENSION_WEIGHTS = np.array([0.7, 0.2, 0.1])


@dataclass(frozen=True)
class Rates:
    """Duplicate rates, each a fraction of an archive's members."""

    exact: float  # members byte-identical to another member of the same archive
    near: float  # planted near copies within an archive
    cross_exact: float  # small members that are exact copies of large members
    cross_near: float  # small members that are near copies of large members


@dataclass
class Archive:
    """The fonts of one archive and where its slots sit in the slot arrays."""

    tarball: Tarball
    num_members: int
    font_names: list[str]
    font_order: np.ndarray  # order of the fonts within every letter folder
    first_slot: int
    absent: set[tuple[int, int]]  # (letter, font) with no member
    unreadable: dict[tuple[int, int], int]  # (letter, font) -> EMPTY or NOT_PNG

    @property
    def num_fonts(self) -> int:
        return len(self.font_names)

    def slot(self, letter: int, font: int) -> int:
        return self.first_slot + letter * self.num_fonts + font

    def member(self, letter: int, font: int) -> str:
        name = member_name(self.font_names[font])
        return f"{self.tarball.root}/{CLASS_NAMES[letter]}/{name}"


def invent_font_names(
    count: int, used_names: set[str], rng: np.random.Generator
) -> list[str]:
    """Return ``count`` new font file names, distinct from each other and from
    ``used_names``, and add them to ``used_names``.

    The names use letters, digits, spaces and dashes only, so their base64 never
    contains "/" and every member stays directly inside its letter folder.
    """
    names: list[str] = []
    while len(names) < count:
        batch = 2 * (count - len(names)) + 16
        syllables = rng.integers(len(NAME_SYLLABLES), size=(batch, 3))
        lengths = rng.integers(2, 4, size=batch)
        qualifiers = rng.integers(len(NAME_QUALIFIERS), size=batch)
        styles = rng.integers(len(NAME_STYLES), size=batch)
        extensions = rng.choice(
            len(NAME_EXTENSIONS), size=batch, p=NAME_EXTENSION_WEIGHTS
        )
        dashed = rng.random(batch) < 0.3
        for i in range(batch):
            family = "".join(NAME_SYLLABLES[s] for s in syllables[i, : lengths[i]])
            words = [family.capitalize(), NAME_QUALIFIERS[qualifiers[i]]]
            base = " ".join(w for w in words if w)
            style = NAME_STYLES[styles[i]]
            if style:
                base += ("-" if dashed[i] else " ") + style
            name = base + NAME_EXTENSIONS[extensions[i]]
            if name not in used_names:
                used_names.add(name)
                names.append(name)
            if len(names) == count:
                break
    return names


def layout_archive(
    tarball: Tarball,
    num_members: int,
    first_slot: int,
    used_names: set[str],
    rng: np.random.Generator,
) -> Archive:
    """Lay out ``num_members`` members as whole fonts, short by one letter for
    the last few fonts, with the published unreadable members in place."""
    unreadable_fonts: list[str] = []
    unreadable_slots: list[tuple[int, str, bool]] = []
    for index, path in enumerate(tarball.known_unreadable):
        letter, name = path.split("/")
        font = base64.b64decode(name.removesuffix(".png")).decode("utf-8")
        if font not in unreadable_fonts:
            unreadable_fonts.append(font)
        # The published large archive has one non-PNG member among its five
        # unreadable ones; which one is not recorded, so the last listed is used.
        is_last_large = tarball is LARGE and index == len(tarball.known_unreadable) - 1
        unreadable_slots.append((CLASS_NAMES.index(letter), font, is_last_large))
    used_names.update(unreadable_fonts)

    num_fonts = math.ceil(num_members / NUM_LETTERS)
    if num_fonts <= len(unreadable_fonts) + NUM_LETTERS:
        raise ValueError(
            f"{tarball.name}: {num_members} members is too few;"
            f" use {MIN_MEMBERS} or more"
        )
    names = unreadable_fonts + invent_font_names(
        num_fonts - len(unreadable_fonts), used_names, rng
    )
    unreadable = {
        (letter, names.index(font)): NOT_PNG if not_png else EMPTY
        for letter, font, not_png in unreadable_slots
    }
    # Fonts short of a letter lose J, then I, and so on, like the published
    # large archive, whose J folder contains one file fewer than the others.
    missing = num_fonts * NUM_LETTERS - num_members
    short_fonts = rng.choice(
        np.arange(len(unreadable_fonts), num_fonts), missing, replace=False
    )
    absent = {(NUM_LETTERS - 1 - i, int(font)) for i, font in enumerate(short_fonts)}
    return Archive(
        tarball=tarball,
        num_members=num_members,
        font_names=names,
        font_order=rng.permutation(num_fonts),
        first_slot=first_slot,
        absent=absent,
        unreadable=unreadable,
    )


def too_few_fonts(archive: Archive) -> str:
    return (
        f"{archive.tarball.name}: {archive.num_members} members have too few fonts"
        " for the requested duplicates; lower --exact-rate, --near-rate,"
        " --cross-exact-rate or --cross-near-rate"
    )


class Planter:
    """Slot-level plan: the kind of every slot and, for copies, its original."""

    def __init__(self, archives: list[Archive], rng: np.random.Generator) -> None:
        total = sum(a.num_fonts * NUM_LETTERS for a in archives)
        self.rng = rng
        self.kind = np.full(total, FRESH, np.int8)
        self.original = np.full(total, -1, np.int64)
        self.light = np.full(total, -1, np.int8)  # index into LIGHT_KINDS
        self.absent = np.zeros(total, bool)
        self.free_fonts: dict[str, list[int]] = {}
        for archive in archives:
            reserved = {font for _, font in archive.absent | archive.unreadable.keys()}
            for letter, font in archive.absent:
                self.absent[archive.slot(letter, font)] = True
            for (letter, font), kind in archive.unreadable.items():
                self.kind[archive.slot(letter, font)] = kind
            # Fonts with an absent or unreadable letter never take part in a plant.
            candidates = [f for f in range(archive.num_fonts) if f not in reserved]
            self.free_fonts[archive.tarball.name] = list(rng.permutation(candidates))

    def pop_font(self, archive: Archive) -> int:
        fonts = self.free_fonts[archive.tarball.name]
        if not fonts:
            raise ValueError(too_few_fonts(archive))
        return int(fonts.pop())

    def copy(self, original: int, copy: int, kind: int, light: int = -1) -> None:
        self.kind[copy] = kind
        self.original[copy] = original
        self.light[copy] = light

    def draw_light(self) -> int:
        return int(self.rng.choice(len(LIGHT_KINDS), p=LIGHT_WEIGHTS))

    def plant_within(self, archive: Archive, rates: Rates) -> list[int]:
        """Plant exact groups and near copies inside ``archive``.

        Returns the fonts left with every slot fresh, the candidate originals
        for copies made in another archive.
        """
        rng = self.rng
        slot = archive.slot
        originals: list[int] = []

        exact_target = rates.exact * archive.num_members
        in_group = 0
        while in_group < FONT_LEVEL_SHARE[EXACT] * exact_target:
            size = int(rng.choice(GROUP_SIZES, p=GROUP_SIZE_WEIGHTS))
            original = self.pop_font(archive)
            originals.append(original)
            for _ in range(size - 1):
                font = self.pop_font(archive)
                for letter in range(NUM_LETTERS):
                    self.copy(slot(letter, original), slot(letter, font), EXACT)
            in_group += size * NUM_LETTERS

        near_target = rates.near * archive.num_members
        near_count = 0
        while near_count < FONT_LEVEL_SHARE[NEAR] * near_target:
            # Some near copies join an exact group, as a re-hinted copy of a
            # duplicated font would.
            if originals and rng.random() < 0.3:
                original = originals[rng.integers(len(originals))]
            else:
                original = self.pop_font(archive)
                originals.append(original)
            font = self.pop_font(archive)
            light = self.draw_light()
            for letter in range(NUM_LETTERS):
                self.copy(slot(letter, original), slot(letter, font), NEAR, light)
            near_count += NUM_LETTERS

        # Single-letter copies pair up slots of fonts that are otherwise fresh.
        fresh_fonts = self.free_fonts[archive.tarball.name]
        split = len(fresh_fonts) // 2
        single_fonts, spare_fonts = fresh_fonts[:split], fresh_fonts[split:]
        self.free_fonts[archive.tarball.name] = spare_fonts
        pools = [list(rng.permutation(single_fonts)) for _ in range(NUM_LETTERS)]
        while in_group < exact_target or near_count < near_target:
            letter = int(rng.integers(NUM_LETTERS))
            if len(pools[letter]) < 2:
                raise ValueError(too_few_fonts(archive))
            original, font = pools[letter].pop(), pools[letter].pop()
            if in_group < exact_target:
                self.copy(slot(letter, original), slot(letter, font), EXACT)
                in_group += 2
            else:
                self.copy(
                    slot(letter, original), slot(letter, font), NEAR, self.draw_light()
                )
                near_count += 1
        return originals + spare_fonts

    def plant_across(
        self, large: Archive, small: Archive, large_fonts: list[int], rates: Rates
    ) -> None:
        """Plant whole small fonts that copy large fonts, exactly or nearly."""
        counts = {
            EXACT: round(rates.cross_exact * small.num_members / NUM_LETTERS),
            NEAR: round(rates.cross_near * small.num_members / NUM_LETTERS),
        }
        chosen = self.rng.choice(
            large_fonts, counts[EXACT] + counts[NEAR], replace=False
        )
        for i, original in enumerate(chosen):
            kind = EXACT if i < counts[EXACT] else NEAR
            font = self.pop_font(small)
            light = self.draw_light() if kind == NEAR else -1
            for letter in range(NUM_LETTERS):
                self.copy(
                    large.slot(letter, int(original)),
                    small.slot(letter, font),
                    kind,
                    light,
                )


@dataclass
class Plan:
    """Everything needed to write the archives, one array entry a member."""

    archives: list[Archive]
    members: list[str]  # full member paths in archive order
    archive_index: np.ndarray  # which archive each member belongs to
    kind: np.ndarray
    original: np.ndarray  # row of the original, or -1
    render: dict[str, np.ndarray]  # fresh parameters, light kind and seed by row


FRESH_PARAMETER_NAMES = (
    "source",
    "inverse_xx",
    "inverse_xy",
    "inverse_yx",
    "inverse_yy",
    "offset_x",
    "offset_y",
    "stroke",
    "gamma_index",
)


def gamma_curves() -> np.ndarray:
    """Return the GAMMA_LEVELS lookup tables, uint8 of shape (levels, 256)."""
    gammas = np.geomspace(*GAMMA_RANGE, GAMMA_LEVELS)
    levels = np.arange(256) / 255
    return np.rint(255 * levels[None, :] ** gammas[:, None]).astype(np.uint8)


def draw_fresh_parameters(
    total: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Draw the fresh perturbation of ``total`` slots.

    The affine map is stored as its inverse, input = inverse @ output + offset
    in pixel-center coordinates with the output measured from the image
    center, because rendering then needs only additions and multiplications.
    Those are correctly rounded wherever numpy runs them, so a copy rendered
    in another batch or process comes out bit-identical to its original.
    """
    scale = rng.uniform(*SCALE_RANGE, total)
    anisotropy = rng.uniform(-ANISOTROPY_MAX, ANISOTROPY_MAX, total)
    angle = np.radians(rng.uniform(-ROTATION_DEGREES_MAX, ROTATION_DEGREES_MAX, total))
    shear = rng.uniform(-SHEAR_MAX, SHEAR_MAX, total)
    shift_x = rng.uniform(-SHIFT_PIXELS_MAX, SHIFT_PIXELS_MAX, total)
    shift_y = rng.uniform(-SHIFT_PIXELS_MAX, SHIFT_PIXELS_MAX, total)
    stroke_sign = rng.integers(-1, 2, total)
    stroke = stroke_sign * rng.uniform(*STROKE_BLEND_RANGE, total)

    # forward = rotation @ [[1, shear], [0, 1]] @ diag(scale_x, scale_y)
    scale_x, scale_y = scale * (1 + anisotropy), scale * (1 - anisotropy)
    cos, sin = np.cos(angle), np.sin(angle)
    a, b = cos * scale_x, (cos * shear - sin) * scale_y
    c, d = sin * scale_x, (sin * shear + cos) * scale_y
    determinant = a * d - b * c
    xx, xy, yx, yy = (
        d / determinant,
        -b / determinant,
        -c / determinant,
        a / determinant,
    )
    center = (IMAGE_SIDE - 1) / 2
    parameters = {
        "inverse_xx": xx,
        "inverse_xy": xy,
        "inverse_yx": yx,
        "inverse_yy": yy,
        "offset_x": center - xx * shift_x - xy * shift_y,
        "offset_y": center - yx * shift_x - yy * shift_y,
        "stroke": stroke,
    }
    parameters = {name: v.astype(np.float32) for name, v in parameters.items()}
    parameters["gamma_index"] = rng.integers(GAMMA_LEVELS, size=total)
    return parameters


def make_plan(
    sources_by_letter: list[np.ndarray],
    sizes: dict[str, int],
    rates: Rates,
    seed: int,
) -> Plan:
    """Decide every member's name, kind, original and render parameters."""
    rng = np.random.default_rng(seed)
    used_names: set[str] = set()
    large = layout_archive(LARGE, sizes[LARGE.name], 0, used_names, rng)
    small_first = large.num_fonts * NUM_LETTERS
    small = layout_archive(SMALL, sizes[SMALL.name], small_first, used_names, rng)
    archives = [large, small]

    planter = Planter(archives, rng)
    large_originals = planter.plant_within(large, rates)
    planter.plant_within(small, rates)
    planter.plant_across(large, small, large_originals, rates)

    total_slots = len(planter.kind)
    params = draw_fresh_parameters(total_slots, rng)
    params["source"] = np.zeros(total_slots, np.int64)
    for archive in archives:
        for letter, sources in enumerate(sources_by_letter):
            first = archive.slot(letter, 0)
            block = slice(first, first + archive.num_fonts)
            # Tile the letter's glyphs so each is used about equally often.
            tiled = np.resize(rng.permutation(sources), archive.num_fonts)
            params["source"][block] = rng.permutation(tiled)
    params["light"] = planter.light
    params["light_seed"] = rng.integers(0, 2**63 - 1, total_slots, dtype=np.int64)
    copies = np.flatnonzero(planter.original >= 0)
    # A copy renders its original's fresh image, so exact copies come out
    # byte-identical and near copies start from the original's pixels.
    for name in FRESH_PARAMETER_NAMES:
        params[name][copies] = params[name][planter.original[copies]]

    row_slots: list[int] = []
    members: list[str] = []
    archive_index: list[int] = []
    for index, archive in enumerate(archives):
        for letter in range(NUM_LETTERS):
            for font in archive.font_order:
                slot = archive.slot(letter, int(font))
                if planter.absent[slot]:
                    continue
                row_slots.append(slot)
                members.append(archive.member(letter, int(font)))
                archive_index.append(index)
    slots = np.array(row_slots)
    row_of_slot = np.full(total_slots, -1, np.int64)
    row_of_slot[slots] = np.arange(len(slots))
    original_slots = planter.original[slots]
    original = np.where(original_slots >= 0, row_of_slot[original_slots], -1)
    return Plan(
        archives=archives,
        members=members,
        archive_index=np.array(archive_index, np.int8),
        kind=planter.kind[slots],
        original=original,
        render={name: values[slots] for name, values in params.items()},
    )


# Rendering runs in worker processes; the plan reaches them once, through
# the pool initializer, and each task names a range of rows.
_worker_state: dict[str, object] = {}

SHIFT_DIRECTIONS = (
    (1, 0),
    (-1, 0),
    (0, 1),
    (0, -1),
    (1, 1),
    (-1, -1),
    (1, -1),
    (-1, 1),
)
IDENTICAL_COPY = "identical copy"


def init_worker(
    sources: np.ndarray, fills: np.ndarray, plan_arrays: dict, not_png: bytes
) -> None:
    _worker_state.update(
        sources=sources, fills=fills, plan=plan_arrays, not_png=not_png
    )


def render_fresh(
    sources: np.ndarray,
    fills: np.ndarray,
    params: dict[str, np.ndarray],
    curves: np.ndarray,
) -> np.ndarray:
    """Render a batch of fresh images, uint8 of shape (batch, 28, 28).

    ``sources`` are the glyphs (batch, 28, 28), ``fills`` the value of pixels
    mapped from outside a glyph (its border median), ``params`` one entry of
    each FRESH_PARAMETER_NAMES array per image. Sampling is bilinear. A
    partial 3x3 max or min filter then thickens or thins the strokes (ink is
    bright) and a gamma curve changes the contrast.
    """
    count = len(sources)
    side = IMAGE_SIDE + 2
    # float32 halves the memory traffic; the map only needs sub-pixel accuracy.
    grid = np.arange(IMAGE_SIDE, dtype=np.float32) - np.float32((IMAGE_SIDE - 1) / 2)
    grid_x, grid_y = grid[None, None, :], grid[None, :, None]
    p = {name: params[name][:, None, None] for name in FRESH_PARAMETER_NAMES}
    x = p["inverse_xx"] * grid_x + p["inverse_xy"] * grid_y + p["offset_x"]
    y = p["inverse_yx"] * grid_x + p["inverse_yy"] * grid_y + p["offset_y"]

    # Each glyph gets a one-pixel ring of its fill value. Indices clipped onto
    # the ring read the fill, so points far outside need no special case.
    padded = np.empty((count, side, side), np.float32)
    padded[:] = fills[:, None, None]
    padded[:, 1:-1, 1:-1] = sources
    flat = padded.ravel()
    x0, y0 = np.floor(x), np.floor(y)
    weight_x, weight_y = x - x0, y - y0
    left = np.clip(x0.astype(np.intp), -1, IMAGE_SIDE) + 1
    right = np.clip(x0.astype(np.intp) + 1, -1, IMAGE_SIDE) + 1
    top = np.clip(y0.astype(np.intp), -1, IMAGE_SIDE) + 1
    bottom = np.clip(y0.astype(np.intp) + 1, -1, IMAGE_SIDE) + 1
    base = np.arange(count)[:, None, None] * side * side
    top, bottom = base + top * side, base + bottom * side
    upper = flat.take(top + left) * (1 - weight_x) + flat.take(top + right) * weight_x
    lower = (
        flat.take(bottom + left) * (1 - weight_x) + flat.take(bottom + right) * weight_x
    )
    image = upper * (1 - weight_y) + lower * weight_y

    edge = np.pad(image, ((0, 0), (1, 1), (1, 1)), mode="edge")
    windows = [
        edge[:, i : i + IMAGE_SIDE, j : j + IMAGE_SIDE]
        for i in range(3)
        for j in range(3)
    ]
    thickened, thinned = windows[0], windows[0]
    for window in windows[1:]:
        thickened = np.maximum(thickened, window)
        thinned = np.minimum(thinned, window)
    filtered = np.where(p["stroke"] > 0, thickened, thinned)
    image = image + np.abs(p["stroke"]) * (filtered - image)
    levels = np.rint(np.clip(image, 0, 255)).astype(np.uint8)
    return curves[p["gamma_index"], levels]


def apply_light(
    pixels: np.ndarray, fill: int, light: int, seed: int
) -> tuple[np.ndarray, str]:
    """Return a light perturbation of ``pixels`` and its description.

    The result always differs from ``pixels`` in at least one pixel: when the
    chosen change has no effect (intensity scaling of a saturated image, say),
    one pixel is moved by one gray level, recorded as ``nudge``.
    """
    rng = np.random.default_rng(seed)
    kind = LIGHT_KINDS[light]
    steps = [kind]
    if kind == "combo":
        steps = [
            str(s) for s in rng.choice(["noise", "flip", "intensity"], 2, replace=False)
        ]
    values = pixels.astype(np.int16)
    parts: list[str] = []
    for step in steps:
        if step == "shift":
            dx, dy = SHIFT_DIRECTIONS[rng.integers(len(SHIFT_DIRECTIONS))]
            shifted = np.full_like(values, fill)
            n = IMAGE_SIDE
            shifted[max(dy, 0) : n + min(dy, 0), max(dx, 0) : n + min(dx, 0)] = values[
                max(-dy, 0) : n + min(-dy, 0), max(-dx, 0) : n + min(-dx, 0)
            ]
            values = shifted
            parts.append(f"shift(dx={dx},dy={dy})")
        elif step == "noise":
            count = int(rng.integers(3, 9))
            positions = rng.choice(values.size, count, replace=False)
            deltas = rng.choice([-1, 1], count) * rng.integers(20, 81, count)
            values.flat[positions] += deltas.astype(np.int16)
            parts.append(f"noise(pixels={count})")
        elif step == "flip":
            count = int(rng.integers(2, 6))
            positions = rng.choice(values.size, count, replace=False)
            values.flat[positions] = 255 - values.flat[positions]
            parts.append(f"flip(pixels={count})")
        else:
            low = rng.random() < 0.5
            factor = rng.uniform(0.90, 0.97) if low else rng.uniform(1.03, 1.10)
            values = np.rint(values * factor).astype(np.int16)
            parts.append(f"intensity(factor={factor:.3f})")
    result = np.clip(values, 0, 255).astype(np.uint8)
    if np.array_equal(result, pixels):
        position = int(rng.integers(result.size))
        value = int(result.flat[position])
        result.flat[position] = value + 1 if value < 255 else value - 1
        parts.append("nudge(pixels=1)")
    return result, "+".join(parts)


def render_rows(bounds: tuple[int, int]) -> list[tuple[bytes, bytes, str, int]]:
    """Render rows ``start`` to ``stop``.

    Returns, per row, the member bytes, their BLAKE2b-128 digest, the
    perturbation and the phash distance to the original (-1 for rows with no
    original).
    """
    state = _worker_state
    plan = state["plan"]
    rows = np.arange(*bounds)
    kinds = plan["kind"][rows]
    images = rows[(kinds != EMPTY) & (kinds != NOT_PNG)]
    sources = plan["source"][images]
    fills = state["fills"][sources]
    params = {name: plan[name][images] for name in FRESH_PARAMETER_NAMES}
    pixels = dict(
        zip(
            images.tolist(),
            render_fresh(state["sources"][sources], fills, params, plan["curves"]),
        )
    )

    results: list[tuple[bytes, bytes, str, int]] = []
    for row in rows.tolist():
        kind = plan["kind"][row]
        perturbation, distance = "", -1
        if kind == EMPTY:
            data = b""
        elif kind == NOT_PNG:
            data = state["not_png"]
        elif kind == NEAR:
            fill = int(state["fills"][plan["source"][row]])
            seed = int(plan["light_seed"][row])
            near, perturbation = apply_light(
                pixels[row], fill, plan["light"][row], seed
            )
            distance = (hash_pixels(pixels[row]) ^ hash_pixels(near)).bit_count()
            data = encode_png(near)
        else:
            data = encode_png(pixels[row])
            if kind == EXACT:
                perturbation, distance = IDENTICAL_COPY, 0
        digest = hashlib.blake2b(data, digest_size=16).digest()
        results.append((data, digest, perturbation, int(distance)))
    return results


class TarWriter:
    """A gzip-compressed GNU tar that adds each folder before its first file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = open(path, "wb")
        # mtime=0 and no file name keep the gzip header independent of the run.
        self.gzip = gzip.GzipFile(
            filename="", mode="wb", fileobj=self.raw, compresslevel=GZIP_LEVEL, mtime=0
        )
        # tarfile makes three small writes a member; batching them saves
        # per-call overhead in the gzip stream.
        self.buffer = io.BufferedWriter(self.gzip, buffer_size=1 << 20)
        self.tar = tarfile.open(
            fileobj=self.buffer, mode="w", format=tarfile.GNU_FORMAT
        )
        self.folders: set[str] = set()

    def add_file(self, name: str, data: bytes) -> None:
        folder = name.rpartition("/")[0]
        if folder not in self.folders:
            root = folder.partition("/")[0]
            for path in dict.fromkeys((root, folder)):
                if path not in self.folders:
                    self.add_folder(path)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = MEMBER_MTIME
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def add_folder(self, path: str) -> None:
        info = tarfile.TarInfo(path)
        info.type = tarfile.DIRTYPE
        info.mtime = MEMBER_MTIME
        info.mode = 0o755
        self.tar.addfile(info)
        self.folders.add(path)

    def close(self) -> None:
        self.tar.close()
        self.buffer.close()  # flushes into the gzip stream and closes it
        self.gzip.close()
        self.raw.close()


@dataclass
class WriteResult:
    digests: list[bytes]  # BLAKE2b-128 of each member's bytes
    perturbations: list[str]
    distances: np.ndarray  # phash Hamming distance to the original, -1 if none
    seconds: float


def write_archives(
    plan: Plan,
    sources: np.ndarray,
    fills: np.ndarray,
    not_png: bytes,
    output_dir: Path,
    processes: int,
    chunk_size: int = 2000,
) -> WriteResult:
    """Render every member in a pool of ``processes`` workers while this process
    writes the tarballs in archive order."""
    start = time.perf_counter()
    plan_arrays = dict(plan.render, kind=plan.kind, curves=gamma_curves())
    bounds: list[tuple[int, int]] = []
    for index in range(len(plan.archives)):
        rows = np.flatnonzero(plan.archive_index == index)
        first, end = int(rows[0]), int(rows[-1]) + 1
        bounds.extend(
            (s, min(s + chunk_size, end)) for s in range(first, end, chunk_size)
        )

    digests: list[bytes] = []
    perturbations: list[str] = []
    distances = np.full(len(plan.members), -1, np.int16)
    writer: TarWriter | None = None
    initargs = (sources, fills, plan_arrays, not_png)
    try:
        with Pool(processes, initializer=init_worker, initargs=initargs) as pool:
            chunks = pool.imap(render_rows, bounds)
            for (first, _), results in tqdm(zip(bounds, chunks), total=len(bounds)):
                tarball = plan.archives[plan.archive_index[first]].tarball
                if writer is None or writer.path.name != tarball.file_name:
                    if writer is not None:
                        writer.close()
                    writer = TarWriter(output_dir / tarball.file_name)
                for row, (data, digest, perturbation, distance) in enumerate(
                    results, first
                ):
                    writer.add_file(plan.members[row], data)
                    digests.append(digest)
                    perturbations.append(perturbation)
                    distances[row] = distance
    finally:
        if writer is not None:
            writer.close()
    return WriteResult(digests, perturbations, distances, time.perf_counter() - start)


class DisjointSet:
    """Union-find over the integers 0 to size - 1."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, first: int, second: int) -> None:
        self.parent[self.find(first)] = self.find(second)


def build_manifest(plan: Plan, written: WriteResult) -> pa.Table:
    """List every planted duplicate, then every other byte-identical member.

    A chance collision is listed against the first member, in archive order,
    with the same bytes, unless planted exact copies already link the two.
    """
    records: dict[str, list] = {
        "member": [],
        "original": [],
        "kind": [],
        "perturbation": [],
        "phash_distance": [],
        "planted": [],
    }

    def add(
        row: int,
        original: int,
        kind: str,
        perturbation: str,
        distance: int,
        planted: bool,
    ) -> None:
        records["member"].append(plan.members[row])
        records["original"].append(plan.members[original])
        records["kind"].append(kind)
        records["perturbation"].append(perturbation)
        records["phash_distance"].append(distance)
        records["planted"].append(planted)

    exact_sets = DisjointSet(len(plan.members))
    for row in np.flatnonzero(plan.original >= 0):
        original = int(plan.original[row])
        kind = "exact" if plan.kind[row] == EXACT else "near"
        add(
            row,
            original,
            kind,
            written.perturbations[row],
            int(written.distances[row]),
            True,
        )
        if kind == "exact":
            exact_sets.union(int(row), original)

    readable = (plan.kind != EMPTY) & (plan.kind != NOT_PNG)
    rows_by_digest: dict[bytes, list[int]] = {}
    for row in np.flatnonzero(readable):
        rows_by_digest.setdefault(written.digests[row], []).append(int(row))
    for rows in rows_by_digest.values():
        for row in rows[1:]:
            if exact_sets.find(row) != exact_sets.find(rows[0]):
                exact_sets.union(row, rows[0])
                add(row, rows[0], "exact", "identical bytes by chance", 0, False)

    schema = pa.schema(
        [
            ("member", pa.string()),
            ("original", pa.string()),
            ("kind", pa.string()),
            ("perturbation", pa.string()),
            ("phash_distance", pa.int16()),
            ("planted", pa.bool_()),
        ]
    )
    return pa.table(records, schema=schema)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def distance_histogram(distances: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(distances, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts)}


def near_statistics(records: dict[str, list], distances: np.ndarray) -> dict:
    """Summarize the phash distances of near records, overall and by the first
    perturbation step (``combo`` when there are two steps)."""
    is_near = np.array(records["kind"]) == "near"
    distances = np.asarray(distances)[is_near]
    steps = np.array(
        ["combo" if "+" in p.replace("+nudge", "") else p.partition("(")[0]
         for p in np.array(records["perturbation"])[is_near]]
    )  # fmt: skip
    by_step = {
        step: {
            "count": int((steps == step).sum()),
            "within_threshold": round(
                float((distances[steps == step] <= NEAR_THRESHOLD).mean()), 4
            ),
            "median": float(np.median(distances[steps == step])),
        }
        for step in sorted(set(steps))
    }
    return {
        "count": int(is_near.sum()),
        "threshold": NEAR_THRESHOLD,
        "within_threshold": round(float((distances <= NEAR_THRESHOLD).mean()), 4)
        if len(distances)
        else None,
        "histogram": distance_histogram(distances),
        "by_perturbation": by_step,
    }


def summarize(plan: Plan, manifest: pa.Table, output_dir: Path, seconds: float) -> dict:
    """Count what was written: members by letter, sizes, checksums and plants."""
    archives = {}
    for index, archive in enumerate(plan.archives):
        rows = plan.archive_index == index
        path = output_dir / archive.tarball.file_name
        letters = [m.split("/")[1] for m, keep in zip(plan.members, rows) if keep]
        archives[archive.tarball.name] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
            "members": int(rows.sum()),
            "empty": int((plan.kind[rows] == EMPTY).sum()),
            "not_png": int((plan.kind[rows] == NOT_PNG).sum()),
            "by_letter": {letter: letters.count(letter) for letter in CLASS_NAMES},
        }
    records = manifest.to_pydict()
    counts: dict[str, int] = {}
    for member, original, kind, planted in zip(
        records["member"], records["original"], records["kind"], records["planted"]
    ):
        scope = member.partition("/")[0].removeprefix("notMNIST_")
        if not original.startswith(member.partition("/")[0]):
            scope = "small_of_large"
        key = f"{kind}_{scope}" if planted else f"{kind}_{scope}_by_chance"
        counts[key] = counts.get(key, 0) + 1
    return {
        "seconds": round(seconds, 1),
        "archives": archives,
        "duplicates": dict(sorted(counts.items())),
        "near_planted": near_statistics(records, records["phash_distance"]),
    }


def hash_image(image: Image.Image) -> int:
    """Return imagehash's phash of ``image`` as a 64-bit integer."""
    return int(str(imagehash.phash(image)), 16)


def hash_pixels(pixels: np.ndarray) -> int:
    return hash_image(Image.fromarray(pixels))


def hash_members(blobs: list[bytes]) -> list[tuple[int, str]]:
    """Return (phash as a 64-bit integer, "") for each image, or (-1, reason)
    for bytes that Pillow cannot decode."""
    results = []
    for data in blobs:
        if not data:
            results.append((-1, "empty"))
            continue
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                results.append((hash_image(image), ""))
        except (UnidentifiedImageError, OSError) as error:
            results.append((-1, type(error).__name__))
    return results


def nearest_outside_family(
    hashes: np.ndarray, readable: np.ndarray, family: np.ndarray, sample: np.ndarray
) -> np.ndarray:
    """Return, for each sampled row, the smallest phash distance to a readable
    row of another family (65 when there is none)."""
    nearest = np.empty(len(sample), np.int16)
    for start in range(0, len(sample), 200):
        rows = sample[start : start + 200]
        distances = np.bitwise_count(hashes[rows, None] ^ hashes[None, :]).astype(
            np.int16
        )
        distances[family[rows, None] == family[None, :]] = 65
        distances[:, ~readable] = 65
        nearest[start : start + len(rows)] = distances.min(axis=1)
    return nearest


def fraction_with_neighbor(hashes: np.ndarray) -> float:
    """Return the fraction of ``hashes`` with another entry at most
    NEAR_THRESHOLD bits away."""
    found = np.zeros(len(hashes), bool)
    for start in range(0, len(hashes), 500):
        block = np.bitwise_count(hashes[start : start + 500, None] ^ hashes[None, :])
        rows = np.arange(len(block))
        block[rows, rows + start] = 64  # an entry is not its own neighbor
        found[start : start + len(block)] = block.min(axis=1) <= NEAR_THRESHOLD
    return float(found.mean())


def compare_with_real_sample(
    hashes: np.ndarray, distinct_rows: np.ndarray, sample_dir: Path, seed: int
) -> dict:
    """Compare how often images have a near duplicate among the distinct real
    glyphs and among as many distinct synthetic images, drawn at random.

    The rate grows with the size of the set, so only sets of equal size are
    compared.
    """
    sources, _, _ = load_sources(sample_dir)
    real = np.array([hash_pixels(glyph) for glyph in sources], np.uint64)
    rng = np.random.default_rng(seed + 1)
    subset = rng.choice(distinct_rows, len(real), replace=False)
    return {
        "set_size": len(real),
        "real_glyphs_with_a_near_duplicate": round(fraction_with_neighbor(real), 4),
        "synthetic_images_with_a_near_duplicate": round(
            fraction_with_neighbor(hashes[subset]), 4
        ),
    }


def verify(
    output_dir: Path, processes: int, sample_size: int, seed: int, sample_dir: Path
) -> dict:
    """Re-read the tarballs and the manifest and measure what they contain.

    Checks that the byte-identical members form exactly the exact-duplicate
    groups of the manifest, and recomputes the phash distance of every near
    record with imagehash. Estimates how many images have a near duplicate the
    manifest does not list: for ``sample_size`` random readable members, the
    smallest phash distance to any member that the manifest does not link to it.
    """
    start = time.perf_counter()
    names: list[str] = []
    blobs: list[bytes] = []
    for tarball in (LARGE, SMALL):
        with tarfile.open(output_dir / tarball.file_name, "r:gz") as archive:
            for member in archive:
                if member.isfile():
                    names.append(member.name)
                    blobs.append(archive.extractfile(member).read())
    logger.info("read %d members; computing phash of each", len(names))
    chunks = [blobs[i : i + 2000] for i in range(0, len(blobs), 2000)]
    with Pool(processes) as pool:
        results = [
            r
            for chunk in tqdm(pool.imap(hash_members, chunks), total=len(chunks))
            for r in chunk
        ]
    readable = np.array([reason == "" for _, reason in results])
    hashes = np.array([max(h, 0) for h, _ in results], np.uint64)
    index = {name: i for i, name in enumerate(names)}

    archives = {}
    for tarball in (LARGE, SMALL):
        rows = [
            i for i, name in enumerate(names) if name.startswith(tarball.root + "/")
        ]
        unreadable = {
            names[i].removeprefix(tarball.root + "/"): results[i][1]
            for i in rows
            if not readable[i]
        }
        letters = [names[i].split("/")[1] for i in rows]
        archives[tarball.name] = {
            "members": len(rows),
            "by_letter": {letter: letters.count(letter) for letter in CLASS_NAMES},
            "unreadable": unreadable,
            "unreadable_as_published": sorted(unreadable)
            == sorted(tarball.known_unreadable),
        }

    digests = [hashlib.blake2b(data, digest_size=16).digest() for data in blobs]
    group_sizes: dict[tuple[str, bytes], int] = {}
    for name, digest, ok in zip(names, digests, readable):
        if ok:
            key = (name.partition("/")[0], digest)
            group_sizes[key] = group_sizes.get(key, 0) + 1
    for tarball in (LARGE, SMALL):
        sizes = np.array(
            [n for (root, _), n in group_sizes.items() if root == tarball.root]
        )
        archives[tarball.name]["byte_identical_fraction"] = round(
            float(sizes[sizes > 1].sum() / sizes.sum()), 4
        )
        archives[tarball.name]["redundant_copy_fraction"] = round(
            float((sizes - 1).sum() / sizes.sum()), 4
        )
    large_digests = {d for (root, d) in group_sizes if root == LARGE.root}
    small_in_large = sum(
        n
        for (root, d), n in group_sizes.items()
        if root == SMALL.root and d in large_digests
    )

    manifest = pq.read_table(output_dir / MANIFEST_NAME).to_pydict()
    exact_sets = DisjointSet(len(names))
    families = DisjointSet(len(names))
    recomputed = np.array(manifest["phash_distance"], np.int16)
    records = zip(manifest["member"], manifest["original"], manifest["kind"])
    for record, (member, original, kind) in enumerate(records):
        first, second = index[member], index[original]
        families.union(first, second)
        if kind == "exact":
            exact_sets.union(first, second)
        else:
            recomputed[record] = np.bitwise_count(hashes[first] ^ hashes[second])
    readable_rows = np.flatnonzero(readable)
    pairs = {(digests[i], exact_sets.find(int(i))) for i in readable_rows}
    exact_groups_match = (
        len(pairs) == len({d for d, _ in pairs}) == len({c for _, c in pairs})
    )
    near = near_statistics(manifest, recomputed)
    listed_distances = np.array(manifest["phash_distance"], np.int16)
    near["mismatches_with_manifest"] = int((listed_distances != recomputed).sum())

    family = np.array([families.find(i) for i in range(len(names))])
    listed = np.zeros(len(names), bool)
    listed[
        [index[m] for m in manifest["member"]]
        + [index[m] for m in manifest["original"]]
    ] = True
    rng = np.random.default_rng(seed)
    sample = rng.choice(
        readable_rows, min(sample_size, len(readable_rows)), replace=False
    )
    nearest = nearest_outside_family(hashes, readable, family, sample)
    unlisted = ~listed[sample]
    first_of_digest = {digests[i]: i for i in readable_rows[::-1]}
    distinct_rows = np.array(sorted(first_of_digest.values()))
    reference = compare_with_real_sample(hashes, distinct_rows, sample_dir, seed)
    return {
        "seconds": round(time.perf_counter() - start, 1),
        "archives": archives,
        "small_members_identical_to_a_large_member": small_in_large,
        "exact_groups_match_manifest": exact_groups_match,
        "near_records_recomputed": near,
        "unlisted_near_duplicates": {
            "sample_size": len(sample),
            "threshold": NEAR_THRESHOLD,
            "fraction_within_threshold": round(
                float((nearest <= NEAR_THRESHOLD).mean()), 4
            ),
            "fraction_within_threshold_of_members_not_in_manifest": round(
                float((nearest[unlisted] <= NEAR_THRESHOLD).mean()), 4
            ),
            "nearest_distance_histogram": distance_histogram(np.minimum(nearest, 20)),
        },
        "near_duplicate_density_against_real_sample": reference,
    }


def load_sources(sample_dir: Path) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Return the distinct real glyphs, their border-median fill values, and the
    glyph indices of each letter."""
    pixels, labels = read_idx(
        sample_dir / "images-idx3-ubyte.gz", sample_dir / "labels-idx1-ubyte.gz"
    )
    # Identical glyphs would make identical fresh images likelier; keep one each.
    _, first = np.unique(pixels.reshape(len(pixels), -1), axis=0, return_index=True)
    first = np.sort(first)
    sources, labels = pixels[first], labels[first]
    border = np.concatenate(
        [sources[:, 0], sources[:, -1], sources[:, :, 0], sources[:, :, -1]], axis=1
    )
    fills = np.median(border, axis=1).astype(np.uint8)
    by_letter = [np.flatnonzero(labels == letter) for letter in range(NUM_LETTERS)]
    return sources, fills, by_letter


def make_not_png(seed: int) -> bytes:
    """Return 300 seeded random bytes that Pillow does not recognize as an image."""
    data = np.random.default_rng([seed, 7]).bytes(300)
    try:
        Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return data
    raise RuntimeError(
        f"seed {seed}: the random bytes for the non-PNG member decode as an image;"
        " use another seed"
    )


def generate(args: argparse.Namespace) -> dict:
    """Write both tarballs and the manifest; return the summary."""
    start = time.perf_counter()
    sources, fills, by_letter = load_sources(args.sample_dir)
    logger.info("%d distinct real glyphs as sources", len(sources))
    rates = Rates(
        args.exact_rate, args.near_rate, args.cross_exact_rate, args.cross_near_rate
    )
    sizes = {LARGE.name: args.large_members, SMALL.name: args.small_members}
    plan = make_plan(by_letter, sizes, rates, args.seed)
    logger.info(
        "planned %d members; rendering with %d processes",
        len(plan.members),
        args.processes,
    )
    written = write_archives(
        plan, sources, fills, make_not_png(args.seed), args.output, args.processes
    )
    manifest = build_manifest(plan, written)
    pq.write_table(manifest, args.output / MANIFEST_NAME, compression="zstd")
    summary = summarize(plan, manifest, args.output, time.perf_counter() - start)
    summary["write_seconds"] = round(written.seconds, 1)
    main_usage = resource.getrusage(resource.RUSAGE_SELF)
    worker_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary["cpu_seconds"] = {
        "main": round(main_usage.ru_utime + main_usage.ru_stime, 1),
        "workers": round(worker_usage.ru_utime + worker_usage.ru_stime, 1),
    }
    summary["manifest_bytes"] = (args.output / MANIFEST_NAME).stat().st_size
    return summary


def print_summary(summary: dict) -> None:
    cpu = summary["cpu_seconds"]
    print(
        f"wall time {summary['seconds']} s, of which rendering and writing"
        f" {summary['write_seconds']} s; CPU time {cpu['main']} s in this process"
        f" and {cpu['workers']} s in the workers"
    )
    for archive in summary["archives"].values():
        print(
            f"{archive['file']}: {archive['members']:,} members,"
            f" {archive['bytes']:,} bytes, {archive['empty']} empty,"
            f" {archive['not_png']} not PNG, sha256 {archive['sha256']}"
        )
        print(
            "  by letter: "
            + ", ".join(f"{k} {v:,}" for k, v in archive["by_letter"].items())
        )
    print(
        "duplicates listed in the manifest: "
        + ", ".join(f"{k} {v:,}" for k, v in summary["duplicates"].items())
    )
    near = summary["near_planted"]
    print(
        f"planted near: {near['count']:,}, phash distance <= {NEAR_THRESHOLD}:"
        f" {near['within_threshold']:.1%}"
    )
    print(f"manifest {MANIFEST_NAME}: {summary['manifest_bytes']:,} bytes")


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--output",
        type=Path,
        required=True,
        help="folder for the tarballs, planted.parquet, summary.json and verify.json",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="number of render processes (default: the CPU count)",
    )
    parser.add_argument(
        "--sample-dir",
        type=Path,
        default=REAL_SAMPLE_DIR,
        help="folder with the real sample, images-idx3-ubyte.gz and"
        f" labels-idx1-ubyte.gz (default {REAL_SAMPLE_DIR})",
    )

    sizes = parser.add_argument_group("sizes and duplicate rates")
    sizes.add_argument(
        "--large-members",
        type=int,
        default=LARGE.num_png_files,
        help=f"members of the large tarball (default {LARGE.num_png_files})",
    )
    sizes.add_argument(
        "--small-members",
        type=int,
        default=SMALL.num_png_files,
        help=f"members of the small tarball (default {SMALL.num_png_files})",
    )
    rates = {
        "--exact-rate": (0.14, "fraction of each archive's members that are"
                         " byte-identical to another member of it"),
        "--near-rate": (0.04, "fraction of each archive's members that are"
                        " planted near copies within it"),
        "--cross-exact-rate": (0.05, "fraction of small members that are exact"
                               " copies of large members"),
        "--cross-near-rate": (0.01, "fraction of small members that are near"
                              " copies of large members"),
    }  # fmt: skip
    for option, (default, text) in rates.items():
        sizes.add_argument(
            option, type=float, default=default, help=f"{text} (default {default})"
        )

    checks = parser.add_argument_group("verification")
    checks.add_argument(
        "--verify",
        action="store_true",
        help="re-read the output after writing it and measure what it contains",
    )
    checks.add_argument(
        "--verify-only",
        action="store_true",
        help="measure an existing output and write no tarballs",
    )
    checks.add_argument(
        "--sample-size",
        type=int,
        default=5000,
        help="members sampled to estimate unlisted near duplicates (default 5000)",
    )

    args = parser.parse_args(argv)
    for option in rates:
        value = getattr(args, option.removeprefix("--").replace("-", "_"))
        if not 0 <= value <= 0.3:
            parser.error(f"{option} {value} is outside the range 0 to 0.3")
    for option in ("--large-members", "--small-members"):
        value = getattr(args, option.removeprefix("--").replace("-", "_"))
        if value < MIN_MEMBERS:
            parser.error(f"{option} {value} is below the minimum of {MIN_MEMBERS}")
    if args.processes < 1:
        parser.error(f"--processes {args.processes} is invalid; use 1 or more")
    if args.sample_size < 1:
        parser.error(f"--sample-size {args.sample_size} is invalid; use 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    args = parse_arguments(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    arguments = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/make_scale_tarballs.py " + " ".join(arguments)
    if not args.verify_only:
        if not (args.sample_dir / "images-idx3-ubyte.gz").is_file():
            logger.error(
                "real sample not found in %s; pass --sample-dir", args.sample_dir
            )
            return 2
        (args.output / "verify.json").unlink(missing_ok=True)
        try:
            summary = generate(args)
        except ValueError as error:
            logger.error("%s", error)
            return 2
        summary.update(command=command, seed=args.seed, processes=args.processes)
        (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print_summary(summary)
    if args.verify or args.verify_only:
        missing = [
            name
            for name in (LARGE.file_name, SMALL.file_name, MANIFEST_NAME)
            if not (args.output / name).is_file()
        ]
        if missing:
            logger.error(
                "%s not found in %s; run without --verify-only to write them",
                ", ".join(missing),
                args.output,
            )
            return 2
        report = verify(
            args.output, args.processes, args.sample_size, args.seed, args.sample_dir
        )
        report["command"] = command
        (args.output / "verify.json").write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
