"""Render the dataset card (README.md) from a build report.

Every number in the card comes from ``reports/build_report.json``; nothing is
typed by hand. The YAML front matter contains plain strings, numbers, lists and
mappings only, so ``yaml.safe_load`` reads it and ``huggingface_hub`` parses
it as ``DatasetCardData``.
"""

from __future__ import annotations

import yaml

from .constants import CITATION, CLASS_NAMES, HOMEPAGE, SPLIT_NAMES

CONFIG_ORDER = ("sanitized", "raw")

REASON_TEXT = {
    "label_conflict": "pixel-identical image carries another label elsewhere",
    "exact_duplicate_within_split": "pixel-identical to an image already in the split",
    "near_duplicate_within_split": "near duplicate of an image already in the split",
    "exact_duplicate_of_train": "pixel-identical to a train image",
    "near_duplicate_of_train": "near duplicate of a train image",
    "exact_duplicate_of_validation": "pixel-identical to a validation image",
    "near_duplicate_of_validation": "near duplicate of a validation image",
}


def size_category(rows: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    for bound, name in bounds:
        if rows < bound:
            return name
    return "1M<n<10M"


def features_yaml() -> list[dict]:
    names = {str(i): letter for i, letter in enumerate(CLASS_NAMES)}
    return [
        {"name": "image", "dtype": "image"},
        {"name": "label", "dtype": {"class_label": {"names": names}}},
        {"name": "font", "dtype": "string"},
        {"name": "source", "dtype": "string"},
    ]


def front_matter(report: dict) -> dict:
    configs = report["configs"]
    total_rows = max(sum(c["splits"].values()) for c in configs.values())
    return {
        "pretty_name": "notMNIST",
        "license": "unknown",
        "language": ["en"],
        "task_categories": ["image-classification"],
        "task_ids": ["multi-class-image-classification"],
        "size_categories": [size_category(total_rows)],
        "source_datasets": ["original"],
        "tags": ["letters", "fonts", "notmnist", "deduplicated"],
        "configs": [
            {
                "config_name": config,
                **({"default": True} if config == "sanitized" else {}),
                "data_files": [
                    {"split": split, "path": f"{config}/{split}-*.parquet"}
                    for split in SPLIT_NAMES
                ],
            }
            for config in CONFIG_ORDER
        ],
        "dataset_info": [
            {
                "config_name": config,
                "features": features_yaml(),
                "splits": [
                    {
                        "name": split,
                        "num_bytes": int(configs[config].get("split_bytes", {}).get(split, 0)),
                        "num_examples": int(configs[config]["splits"][split]),
                    }
                    for split in SPLIT_NAMES
                ],
                "download_size": int(configs[config].get("download_size", 0)),
                "dataset_size": int(sum(configs[config].get("split_bytes", {}).values())),
            }
            for config in CONFIG_ORDER
        ],
    }


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_table_cell(cell) for cell in row) + " |")
    return "\n".join(lines)


def _table_cell(value) -> str:
    """Format a Markdown table cell: archive member names may contain | or line breaks."""
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.splitlines())


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _size(value) -> str:
    return "all" if value is None else f"{value:,}"


def _variant_clause(settings: dict) -> str:
    """Describe the variant comparisons of the dedup settings, or return ''."""
    variants = []
    if settings.get("compare_median_filtered"):
        variants.append("of their 3x3 median-filtered images (a few inverted pixels)")
    if settings.get("compare_shifted"):
        variants.append(
            "of one image shifted by one pixel against the other, outer ring trimmed"
        )
    if not variants:
        return ""
    return ", or at that distance between the phash " + " or ".join(variants)


def _near_rule(overlap: dict) -> str:
    # Reports written before the variant comparisons have no "rule".
    default = f"{overlap['method']} Hamming distance <= {overlap['max_distance']}"
    return overlap.get("rule", default)


def overlap_table(overlap: dict) -> str:
    rows = [
        [row["label"], _number(row["exact_rows"]), _number(row["exact_images"]),
         _number(row["near_rows"]), _number(row["near_images"])]
        for row in overlap["rows"]
    ]
    table = _table(["splits", "exact rows", "exact images", "near rows", "near images"], rows)
    return (
        f"{table}\n\nNear duplicate: {_near_rule(overlap)}. Label-conflicting exact groups: "
        f"{overlap['conflicting_groups']:,} ({overlap['conflicting_rows']:,} rows); "
        f"near-duplicate links between different letters: {overlap['cross_label_links']:,}."
    )


def balance_table(config: dict) -> str:
    balance = config["class_balance"]
    rows = [[letter] + [_number(balance[split][letter]) for split in SPLIT_NAMES] for letter in CLASS_NAMES]
    rows.append(["**total**"] + [f"**{config['splits'][split]:,}**" for split in SPLIT_NAMES])
    return _table(["letter", *SPLIT_NAMES], rows)


def skipped_section(report: dict, limit: int = 40) -> str:
    rows, counts = [], []
    for name, read in report["read"].items():
        counts.append(
            [read["archive"], _number(read["rows"])]
            + [", ".join(f"{n:,} {reason}" for reason, n in read["reason_counts"].items()) or "none"]
        )
        for omission in read["omissions"]:
            if omission["reason"] in {"empty", "not_png", "undecodable", "wrong_size", "duplicate_name"}:
                rows.append([read["archive"], f"`{omission['member']}`", omission["reason"], omission["detail"]])
    text = _table(["archive", "images read", "left out, by reason"], counts)
    if rows:
        shown = rows[:limit]
        text += "\n\nSkipped members (unreadable images):\n\n"
        text += _table(["archive", "member", "reason", "detail"], shown)
        if len(rows) > limit:
            text += f"\n\n{len(rows) - limit:,} more are listed in `reports/skipped.csv`."
    text += "\n\nEvery member left out, ignored ones included, is listed in `reports/skipped.csv`."
    return text


def baseline_section(report: dict) -> str:
    baseline = report.get("baseline")
    if not baseline:
        return (
            "No baseline has been recorded for this build. Run "
            "`python train_baseline.py --dataset DIR --output runs/mlp`, then "
            "`notmnist card DIR --baseline runs/mlp/metrics.json`."
        )
    rows = []
    for entry in baseline if isinstance(baseline, list) else [baseline]:
        rows.append([
            entry.get("model", "?"),
            entry.get("config", "?"),
            f"{100 * entry['validation_accuracy']:.2f}%",
            f"{100 * entry['test_accuracy']:.2f}%",
        ])
    return _table(["model", "trained on", "validation accuracy", "test accuracy"], rows)


def render_card(report: dict) -> str:
    """Return the full README.md text of a build."""
    yaml_text = yaml.safe_dump(front_matter(report), sort_keys=False, allow_unicode=True)
    options = report["options"]
    dedup = report["dedup"]
    tarballs = report["tarballs"]
    tarball_rows = [
        [f"`{t['file_name']}`", f"{t['bytes']:,}", f"`{t['sha256']}`", "yes" if t["matches_published"] else "**no**"]
        for t in tarballs.values()
    ]
    removal_rows = [
        [REASON_TEXT.get(reason, reason), _number(count)] for reason, count in dedup["removals_by_reason"].items()
    ]
    shortfall = {s: m for s, m in dedup["shortfall"].items() if m}
    shortfall_text = (
        "The pool of unused images ran out before refilling was complete: "
        + "; ".join(f"{split}: " + ", ".join(f"{k} short by {v}" for k, v in m.items()) for split, m in shortfall.items())
        + "."
        if shortfall
        else "Refilling restored every split to its requested size and balance."
    )

    sections = [
        "---\n" + yaml_text + "---\n",
        "# notMNIST",
        "notMNIST is Yaroslav Bulatov's set of the letters A to J rendered from about "
        "50,000 publicly available fonts as 28x28 grayscale images (black background, "
        f"white ink), published in 2011 as a harder MNIST: {HOMEPAGE}. This dataset "
        "was built from the original archives by `notmnist-ds`: balanced, seeded splits, "
        "with exact and near duplicates measured and, in the default `sanitized` config, "
        "removed across splits.",
        "```python\nfrom datasets import load_dataset\n\n"
        "dataset = load_dataset(\"notmnist\")          # sanitized, the default\n"
        "raw = load_dataset(\"notmnist\", \"raw\")      # the splits as drawn\n```",
        "Columns: `image` (PNG, 28x28, mode L), `label` (ClassLabel A-J), `font` (the font "
        "file the glyph was rendered from, decoded from the base64 file name), `source` "
        "(the member path in the archive, a stable id).",
        "## Configs",
        "- `sanitized` (default): no validation or test image is a pixel-identical or near "
        "duplicate of an image in an earlier split; train keeps one image per pixel-identical "
        "group; validation and test are refilled from unused images to their size.\n"
        "- `raw`: train and validation drawn from `notMNIST_large`, test from "
        "`notMNIST_small`, balanced per letter, duplicates included.",
        "## How this build was made",
        _table(["archive", "bytes", "sha256", "matches published"], tarball_rows),
        f"- Package: notmnist-ds {report['version']}; build fingerprint `{report['fingerprint']}`\n"
        f"- Seed: {options['seed']}; requested sizes: train {_size(options['train_size'])}, "
        f"validation {_size(options['validation_size'])}, test {_size(options['test_size'])}\n"
        f"- Duplicates: pixel-identical images by a 128-bit digest of the decoded pixels; near "
        f"duplicates by {dedup['settings']['method']} ({dedup['settings']['hash_size'] ** 2} bits) "
        f"at Hamming distance at most {dedup['settings']['max_distance']}"
        f"{_variant_clause(dedup['settings'])}; near-uniform images "
        f"(pixel range at most {dedup['settings']['near_uniform_max_range']}) are compared by mean "
        f"absolute pixel difference (at most {dedup['settings']['near_uniform_max_mean_difference']}) "
        f"instead of by hash\n"
        f"- {dedup['distinct_images']:,} distinct images, {dedup['near_duplicate_links']:,} "
        f"near-duplicate links between them",
    ]
    for config in CONFIG_ORDER:
        sections += [f"## Class balance: `{config}`", balance_table(report["configs"][config])]
    sections += [
        "## Overlap between splits",
        "Rows affected and distinct images, for exact (pixel-identical) and near duplicates.",
        "### `raw`",
        overlap_table(report["overlap"]["raw"]),
        "### `sanitized`",
        overlap_table(report["overlap"]["sanitized"]),
        "### What sanitizing removed",
        _table(["reason", "rows"], removal_rows) if removal_rows else "Nothing.",
        f"Train is not refilled: it keeps one image per pixel-identical group, so it has "
        f"{report['configs']['raw']['splits']['train'] - report['configs']['sanitized']['splits']['train']:,} "
        f"rows fewer than in `raw`. "
        f"Refilled: {', '.join(f'{n:,} {s}' for s, n in dedup['refilled'].items())}. {shortfall_text} "
        "Every removal, with the row it matched, is listed in `reports/removals.csv`.",
        "## Skipped members",
        skipped_section(report),
        "## Pictures",
        "Sample images per letter and split (sanitized):\n\n![samples](reports/samples.png)",
        "Example pairs at each Hamming distance, up to and past the threshold:\n\n"
        "![near duplicates](reports/near_duplicates.png)",
        "## Baseline",
        baseline_section(report),
        "## Citation",
        f"```bibtex\n{CITATION}\n```",
    ]
    return "\n\n".join(sections) + "\n"
