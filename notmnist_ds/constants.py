"""Facts about the raw notMNIST data, stated once.

Yaroslav Bulatov published notMNIST in 2011: the letters A to J rendered from
about 50,000 font files as 28x28 grayscale PNGs, in two tar.gz archives.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASS_NAMES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J")
NUM_CLASSES = len(CLASS_NAMES)

IMAGE_SIDE = 28
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE)
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE

# The hosts that serve the archives, tried in this order.
MIRRORS: tuple[str, ...] = (
    "http://yaroslavvb.com/upload/notMNIST/",
    "https://commondatastorage.googleapis.com/books1000/",
)


@dataclass(frozen=True)
class Tarball:
    """One published notMNIST archive and what it is known to contain."""

    name: str  # "large" or "small"
    file_name: str
    num_bytes: int
    sha256: str
    root: str  # the folder every member sits under
    num_png_files: int
    num_readable: int
    # Members known to be unreadable in the published archive. The reader does
    # not consult this list: it skips any unreadable member it meets, and tests
    # compare its skip report against these names.
    known_unreadable: tuple[str, ...]


LARGE = Tarball(
    name="large",
    file_name="notMNIST_large.tar.gz",
    num_bytes=247_336_696,
    sha256="1e8261b75484b520dc76027f5c22af50fe608e3bb16277caec086eb928f9b61c",
    root="notMNIST_large",
    num_png_files=529_119,
    num_readable=529_114,
    known_unreadable=(
        "A/SG90IE11c3RhcmQgQlROIFBvc3Rlci50dGY=.png",
        "A/Um9tYW5hIEJvbGQucGZi.png",
        "B/TmlraXNFRi1TZW1pQm9sZEl0YWxpYy5vdGY=.png",
        "D/VHJhbnNpdCBCb2xkLnR0Zg==.png",
        "A/RnJlaWdodERpc3BCb29rSXRhbGljLnR0Zg==.png",
    ),
)

SMALL = Tarball(
    name="small",
    file_name="notMNIST_small.tar.gz",
    num_bytes=8_458_043,
    sha256="76b2ef7ccc56452964780569db37b279c9cbe1bf442c3b38be784752683b3cec",
    root="notMNIST_small",
    num_png_files=18_726,
    num_readable=18_724,
    known_unreadable=(
        "A/RGVtb2NyYXRpY2FCb2xkT2xkc3R5bGUgQm9sZC50dGY=.png",
        "F/Q3Jvc3NvdmVyIEJvbGRPYmxpcXVlLnR0Zg==.png",
    ),
)

TARBALLS: dict[str, Tarball] = {LARGE.name: LARGE, SMALL.name: SMALL}

# The archive each split is drawn from, as in the course's notebook.
SPLIT_SOURCES: dict[str, Tarball] = {
    "train": LARGE,
    "validation": LARGE,
    "test": SMALL,
}
SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")

# Default split sizes (totals over the ten letters).
DEFAULT_SIZES: dict[str, int] = {"train": 200_000, "validation": 10_000, "test": 10_000}

CITATION = """\
@misc{bulatov2011notmnist,
  author = {Yaroslav Bulatov},
  title = {notMNIST dataset},
  year = {2011},
  howpublished = {\\url{http://yaroslavvb.blogspot.com/2011/09/notmnist-dataset.html}}
}"""
HOMEPAGE = "http://yaroslavvb.blogspot.com/2011/09/notmnist-dataset.html"
