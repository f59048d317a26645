"""Records of the members a build skipped or ignored, with the reasons.

Two kinds of member do not become rows. A *skipped* member sits where an image
belongs (a regular file in a letter folder) but is not a usable image. An
*ignored* member is not meant to be an image at all: OS junk, folders, links,
unsafe paths, files outside the letter folders. Both are counted and listed by
name; neither is ever dropped silently.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field

from .constants import CLASS_NAMES


class SkipReason(str, enum.Enum):
    """The reason a member in a letter folder is not a row."""

    EMPTY = "empty"  # zero bytes
    NOT_PNG = "not_png"  # does not start with the PNG signature
    UNDECODABLE = "undecodable"  # PNG that Pillow cannot decode: truncated, corrupt
    WRONG_SIZE = "wrong_size"  # decodes, or declares in its header, a size other than 28x28
    DUPLICATE_NAME = "duplicate_name"  # a second member with the same path; the first is kept


class IgnoreReason(str, enum.Enum):
    """The reason a member is not even looked at as an image."""

    OS_JUNK = "os_junk"  # .DS_Store, Thumbs.db, ._* AppleDouble files, __MACOSX/
    DIRECTORY = "directory"
    LINK = "link"  # symbolic or hard link
    SPECIAL_FILE = "special_file"  # device, FIFO
    UNSAFE_PATH = "unsafe_path"  # absolute, or a path with '..' that leaves the root
    OUTSIDE_LETTER_FOLDERS = "outside_letter_folders"  # not directly under A ... J


SKIP_REASON_HELP: dict[str, str] = {
    SkipReason.EMPTY.value: "the file has zero bytes",
    SkipReason.NOT_PNG.value: "the bytes do not start with the PNG signature",
    SkipReason.UNDECODABLE.value: "Pillow could not decode it (truncated or corrupt)",
    SkipReason.WRONG_SIZE.value: "its size is not 28x28 pixels",
    SkipReason.DUPLICATE_NAME.value: "an earlier member has the same path",
    IgnoreReason.OS_JUNK.value: "operating-system metadata (.DS_Store, ._*, __MACOSX/)",
    IgnoreReason.DIRECTORY.value: "a folder entry",
    IgnoreReason.LINK.value: "a symbolic or hard link",
    IgnoreReason.SPECIAL_FILE.value: "a device file or FIFO",
    IgnoreReason.UNSAFE_PATH.value: "an absolute path or one that leaves the archive",
    IgnoreReason.OUTSIDE_LETTER_FOLDERS.value: "not directly inside a folder A to J",
}


@dataclass(frozen=True)
class Omission:
    """One member that did not become a row."""

    archive: str  # archive file name
    member: str  # the member's path as stored in the archive
    reason: str  # a SkipReason or IgnoreReason value
    detail: str = ""

    @property
    def is_skip(self) -> bool:
        return self.reason in {r.value for r in SkipReason}


@dataclass
class ReadReport:
    """Counts and the full list of members an archive read left out."""

    archive: str
    rows: int = 0
    rows_per_letter: Counter = field(default_factory=Counter)
    uniform_images: int = 0  # rows whose pixels are all one value
    converted_images: int = 0  # rows decoded from a mode other than 8-bit L
    omissions: list[Omission] = field(default_factory=list)

    def omit(self, member: str, reason: enum.Enum, detail: str = "") -> None:
        self.omissions.append(Omission(self.archive, member, reason.value, detail))

    @property
    def skipped(self) -> list[Omission]:
        return [o for o in self.omissions if o.is_skip]

    @property
    def ignored(self) -> list[Omission]:
        return [o for o in self.omissions if not o.is_skip]

    def missing_letters(self) -> list[str]:
        """Return the letters of which no image became a row."""
        return [letter for letter in CLASS_NAMES if not self.rows_per_letter.get(letter)]

    def reason_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(o.reason for o in self.omissions).items()))

    def summary(self) -> str:
        """Return one line of counts, for the end of the read phase."""
        reasons = ", ".join(f"{n} {r}" for r, n in self.reason_counts().items())
        return (
            f"{self.archive}: {self.rows} images read, "
            f"{len(self.skipped)} skipped, {len(self.ignored)} ignored"
            + (f" ({reasons})" if reasons else "")
        )

    def to_dict(self) -> dict:
        return {
            "archive": self.archive,
            "rows": self.rows,
            # Every letter is listed, so a missing letter folder shows as 0.
            "rows_per_letter": {
                letter: self.rows_per_letter.get(letter, 0) for letter in CLASS_NAMES
            },
            "uniform_images": self.uniform_images,
            "converted_images": self.converted_images,
            "reason_counts": self.reason_counts(),
            "omissions": [
                {"member": o.member, "reason": o.reason, "detail": o.detail}
                for o in self.omissions
            ],
        }
