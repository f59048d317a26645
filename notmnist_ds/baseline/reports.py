"""Render training results: the loss and accuracy curves as a PNG, and text tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

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
