"""notMNIST: the letters A to J in about 50,000 fonts, as 28x28 grayscale images.

The dataset's ``datasets`` builder. Two configs share one definition:

- ``sanitized`` (default): train keeps one image of each pixel-identical
  group. No validation or test image duplicates or nearly duplicates an image
  of an earlier split, and validation and test are refilled to their size from
  unused images.
- ``raw``: the course's split as drawn: train and validation from
  ``notMNIST_large``, test from ``notMNIST_small``, balanced per letter.

``datasets`` 4 and later no longer run loading scripts from ``load_dataset``,
so this builder is run through the builder API, which ``notmnist build`` does::

    from loading_script import Notmnist
    builder = Notmnist(config_name="raw", data_dir="path/to/tarballs")
    builder.download_and_prepare()
    dataset = builder.as_dataset()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets

from dedup.near import DedupSettings
from notmnist_ds.constants import CITATION, CLASS_NAMES, HOMEPAGE, LARGE, SMALL, SPLIT_NAMES
from notmnist_ds.download import fetch_tarballs, file_sha256, locate_tarballs
from notmnist_ds.pipeline import BuildOptions, Prepared, prepare

DESCRIPTION = """\
notMNIST, by Yaroslav Bulatov (2011): glyphs of the letters A to J taken from
publicly available fonts, rendered as 28x28 grayscale images (black background,
white ink). Train and validation come from notMNIST_large, test from
notMNIST_small, balanced per letter and drawn with a fixed seed."""

LICENSE = "Unknown: published by Yaroslav Bulatov for research and teaching use"

FEATURES = datasets.Features(
    {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=list(CLASS_NAMES)),
        "font": datasets.Value("string"),
        "source": datasets.Value("string"),
    }
)


@dataclass
class NotmnistConfig(datasets.BuilderConfig):
    """A notMNIST config; its options decide which images become rows.

    Sizes are totals over the ten letters (multiples of 10), or None for every
    readable image. ``data_dir`` names a folder holding the two tarballs; without
    it they are downloaded into the cache.
    """

    train_size: int | None = 200_000
    validation_size: int | None = 10_000
    test_size: int | None = 10_000
    seed: int = 0
    dedup_method: str = "phash"
    hash_size: int = 8
    max_distance: int = 4
    compare_median_filtered: bool = True
    compare_shifted: bool = True
    verify: bool = True
    workers: int = 2

    def build_options(self) -> BuildOptions:
        return BuildOptions(
            train_size=self.train_size,
            validation_size=self.validation_size,
            test_size=self.test_size,
            seed=self.seed,
            dedup=DedupSettings(
                self.dedup_method,
                self.hash_size,
                self.max_distance,
                self.compare_median_filtered,
                self.compare_shifted,
            ),
        )


class Notmnist(datasets.GeneratorBasedBuilder):
    """The notMNIST letters, with seeded splits and duplicate sanitization."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = NotmnistConfig
    BUILDER_CONFIGS = [
        NotmnistConfig(
            name="sanitized",
            version=VERSION,
            description="Splits with exact and near duplicates across them removed.",
        ),
        NotmnistConfig(
            name="raw",
            version=VERSION,
            description="The splits as drawn, duplicates included.",
        ),
    ]
    DEFAULT_CONFIG_NAME = "sanitized"
    # Rows are about 500 bytes; large record batches cut the writer's
    # per-batch overhead, which dominates at the default for images (100).
    DEFAULT_WRITER_BATCH_SIZE = 10_000

    def __init__(self, *args, prepared: Prepared | None = None, **kwargs) -> None:
        # ``notmnist build`` reads the archives once and hands the result to
        # both configs. It also passes ``hash``, so the cache folder changes
        # whenever the inputs or options do.
        self._prepared = prepared
        kwargs.setdefault("dataset_name", "notmnist")
        super().__init__(*args, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=FEATURES,
            homepage=HOMEPAGE,
            citation=CITATION,
            license=LICENSE,
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager):
        prepared = self._prepared
        if prepared is None:
            if self.config.data_dir:
                paths = locate_tarballs(
                    Path(self.config.data_dir), (LARGE, SMALL), verify=self.config.verify
                )
            else:
                paths = fetch_tarballs((LARGE, SMALL), verify=self.config.verify)
            prepared = prepare(
                paths,
                {name: file_sha256(path) for name, path in paths.items()},
                self.config.build_options(),
                workers=self.config.workers,
            )
            self._prepared = prepared

        return [
            datasets.SplitGenerator(
                name=split,
                gen_kwargs={
                    "prepared": prepared,
                    "indices": prepared.split_indices(self.config.name, split),
                },
            )
            for split in SPLIT_NAMES
        ]

    def _generate_examples(self, prepared: Prepared, indices):
        for image in indices.tolist():
            example = prepared.example(image)
            yield example["source"], example
