"""The ``notmnist`` command-line program."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .constants import DEFAULT_SIZES

logger = logging.getLogger("notmnist_ds")


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    from dedup.hashing import HASH_METHODS
    from dedup.near import DedupSettings

    defaults = DedupSettings()
    parser.add_argument("--output", type=Path, default=Path("notmnist"),
                        help="folder to write the dataset into (default: ./notmnist)")
    parser.add_argument("--data-dir", type=Path,
                        help="folder that contains notMNIST_large.tar.gz and notMNIST_small.tar.gz; "
                        "without it they are downloaded into the cache")
    parser.add_argument("--no-verify", action="store_true",
                        help="use archives whose size or sha256 differ from the published ones")
    for split in ("train", "valid", "test"):
        default = DEFAULT_SIZES["validation" if split == "valid" else split]
        parser.add_argument(f"--{split}-size", default=str(default), metavar="N|all",
                            help=f"images in the {split} split, over all ten letters "
                            f"(a multiple of 10, or 'all'; default {default:,})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split draw (default 0)")
    parser.add_argument("--dedup-method", choices=HASH_METHODS, default=defaults.method,
                        help="perceptual hash for near duplicates (default phash)")
    parser.add_argument("--hash-size", type=int, default=defaults.hash_size,
                        help="side of the hash bit grid, 2 to 8 (default 8: 64 bits)")
    parser.add_argument("--max-distance", type=int, default=defaults.max_distance,
                        help="largest Hamming distance that counts as a near duplicate "
                        f"(default {defaults.max_distance})")
    parser.add_argument("--no-median-filter", action="store_true",
                        help="do not also compare the 3x3 median-filtered images, which "
                        "finds copies with a few inverted pixels")
    parser.add_argument("--no-shift", action="store_true",
                        help="do not also compare one-pixel shifts of the images")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes decoding images (default: 2, or 1 on one core)")
    parser.add_argument("--max-shard-size", default="64MiB",
                        help="largest Parquet shard, such as 64MiB or 500MB (default 64MiB)")
    parser.add_argument("--cache-dir", type=Path,
                        help="datasets cache to register the build in (default: HF_DATASETS_CACHE)")


def run_build(args: argparse.Namespace) -> int:
    from dedup.near import DedupSettings

    from .build import build
    from .export import parse_byte_size
    from .pipeline import BuildOptions
    from .splits import parse_size

    options = BuildOptions(
        train_size=parse_size(args.train_size),
        validation_size=parse_size(args.valid_size),
        test_size=parse_size(args.test_size),
        seed=args.seed,
        dedup=DedupSettings(
            args.dedup_method,
            args.hash_size,
            args.max_distance,
            compare_median_filtered=not args.no_median_filter,
            compare_shifted=not args.no_shift,
        ),
    )
    if args.workers < 1:
        raise ValueError(f"invalid --workers {args.workers}: use 1 or more")
    result = build(
        args.output,
        options,
        data_dir=args.data_dir,
        verify=not args.no_verify,
        workers=args.workers,
        max_shard_bytes=parse_byte_size(args.max_shard_size),
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    for phase, seconds in result.seconds.items():
        logger.info("  %-18s %8.2f s", phase, seconds)
    print(f"Built {result.output}")
    for config, sizes in result.split_sizes.items():
        print(f"  {config}: " + ", ".join(f"{n:,} {split}" for split, n in sizes.items()))
    bare_name = "load_dataset('notmnist')"
    if args.cache_dir is not None:
        bare_name = f"load_dataset('notmnist', cache_dir={str(args.cache_dir)!r})"
    print(f"Load it with: load_dataset({str(result.output)!r}) or {bare_name}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from .stats import format_stats

    print(format_stats(args.folder))
    return 0


def run_overlap(args: argparse.Namespace) -> int:
    from .reports import load_report

    from dedup.overlap import OverlapReport

    report = load_report(args.folder)
    configs = [args.config] if args.config else ["raw", "sanitized"]
    for config in configs:
        data = report["overlap"][config]
        if args.json:
            print(json.dumps({config: data}, indent=2))
            continue
        overlap = OverlapReport.from_dict(data)
        print(f"{config}:")
        print(overlap.format_table())
        print()
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from .stats import write_preview

    if not 1 <= args.per_letter <= 64:
        raise ValueError(f"invalid --per-letter {args.per_letter}: use 1 to 64")
    if args.output.suffix.lower() != ".png":
        raise ValueError(f"--output {args.output} must end in .png: the grid is written as PNG")

    path = write_preview(args.folder, args.output, args.config, args.per_letter)
    print(f"Wrote {path}")
    return 0


def run_card(args: argparse.Namespace) -> int:
    from .stats import rewrite_card

    rewrite_card(args.folder, args.baseline)
    print(f"Wrote {args.folder / 'README.md'}")
    return 0


def run_make_tarballs(args: argparse.Namespace) -> int:
    from .constants import LARGE, SMALL
    from .sample_tarballs import write_sample_tarballs

    existing = [args.output / t.file_name for t in (LARGE, SMALL) if (args.output / t.file_name).exists()]
    if existing and not args.force:
        raise ValueError(
            f"{', '.join(map(str, existing))} already exists; archives made from a sample "
            "would replace it, so choose another --output or pass --force"
        )
    if args.output.exists() and not args.output.is_dir():
        raise ValueError(f"--output {args.output} is a file, not a folder; choose a folder")
    paths = write_sample_tarballs(args.sample_dir, args.output)
    for path in paths.values():
        print(f"Wrote {path}")
    return 0


def make_parser() -> argparse.ArgumentParser:
    from .publish import add_publish_arguments, run_publish

    parser = argparse.ArgumentParser(
        prog="notmnist",
        description="Build notMNIST into a curated Hugging Face dataset.",
    )
    parser.add_argument("--version", action="version", version=f"notmnist-ds {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="download (or find) the archives and build the dataset")
    add_build_arguments(build)
    build.set_defaults(handler=run_build)

    stats = commands.add_parser("stats", help="class balance, totals, size on disk, skipped members")
    stats.add_argument("folder", type=Path, help="a folder written by notmnist build")
    stats.set_defaults(handler=run_stats)

    overlap = commands.add_parser("overlap", help="exact and near overlap between the splits")
    overlap.add_argument("folder", type=Path, help="a folder written by notmnist build")
    overlap.add_argument("--config", choices=["raw", "sanitized"])
    overlap.add_argument("--json", action="store_true", help="print the report as JSON")
    overlap.set_defaults(handler=run_overlap)

    preview = commands.add_parser("preview", help="write a grid of sample images per letter and split")
    preview.add_argument("folder", type=Path, help="a folder written by notmnist build")
    preview.add_argument("--output", type=Path, default=Path("grid.png"),
                         help="PNG file to write (default: grid.png)")
    preview.add_argument("--config", choices=["raw", "sanitized"], default="sanitized",
                         help="config to show (default: sanitized)")
    preview.add_argument("--per-letter", type=int, default=8,
                         help="images per letter and split, 1 to 64 (default: 8)")
    preview.set_defaults(handler=run_preview)

    card = commands.add_parser("card", help="render the dataset card again, optionally with baseline results")
    card.add_argument("folder", type=Path, help="a folder written by notmnist build")
    card.add_argument("--baseline", type=Path, action="append",
                      help="metrics.json written by train_baseline.py (repeatable)")
    card.set_defaults(handler=run_card)

    publish = commands.add_parser("publish", help="upload a built folder to the Hugging Face Hub")
    add_publish_arguments(publish)
    publish.set_defaults(handler=run_publish)

    sample = commands.add_parser(
        "make-tarballs",
        help="write notMNIST-layout tarballs from images in the MNIST IDX format",
    )
    sample.add_argument("sample_dir", type=Path,
                        help="folder with images-idx3-ubyte.gz and labels-idx1-ubyte.gz")
    sample.add_argument("--output", type=Path, default=Path("tarballs"),
                        help="folder to write the two archives into (default: ./tarballs)")
    sample.add_argument("--force", action="store_true",
                        help="replace archives already in --output")
    sample.set_defaults(handler=run_make_tarballs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    level = logging.INFO
    if args.verbose:
        level = logging.DEBUG
    elif args.quiet:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(message)s")
    if args.quiet:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

    from .archive import ArchiveError
    from .atomic import OutputFolderError, explain_disk_full
    from .download import DownloadError, VerificationError
    from .splits import SplitSizeError

    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader of the output went away (as with `| head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt as interrupt:
        from .build import InterruptedAfterSwap

        if isinstance(interrupt, InterruptedAfterSwap):
            print(
                f"notmnist: interrupted after the new build was complete; "
                f"{interrupt.output} holds it",
                file=sys.stderr,
            )
        else:
            print("notmnist: interrupted; earlier output was left as it was", file=sys.stderr)
        return 130
    except (
        ArchiveError,
        DownloadError,
        VerificationError,
        SplitSizeError,
        OutputFolderError,
        FileNotFoundError,
        ValueError,
    ) as error:
        print(f"notmnist: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        # A full disk may come wrapped by a library (datasets raises
        # DatasetGenerationError), so the whole chain of causes is checked.
        message = explain_disk_full(error)
        if message is None and not isinstance(error, OSError):
            raise
        print(f"notmnist: error: {message or error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
