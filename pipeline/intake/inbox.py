"""What an inbox holds: the files to read, the files to skip, and the entries that cannot be read.

`take_in(inbox, skip=[out])` walks the inbox (subfolders too) and returns an `Intake`:

- `books`: names (relative to the inbox, sorted) of the entries with a workbook's extension, to be
  pre-scanned and read. FIFOs, sockets, links to nothing or to themselves are among them: the guard
  (pipeline.intake.guard) refuses each with a finding, without ever blocking on it;
- `others`: the other files (a note, a PDF named .pdf), skipped and listed in the manifest;
- `refused`: name -> guard Problem for what is never opened at all: a link that leads out of the
  inbox (its target is not the inbox's to read: a system file would otherwise be read and its
  fingerprint published) and a sub-folder that cannot be listed (its ward would be "Chưa nộp" with no
  word of why).

Links are never followed to folders; a link to a file inside the inbox is read like that file. The
folders in `skip` (the output folder, when it lies inside the inbox) are not walked at all, and
tonghop's own workbooks anywhere else are recognised by the guard from their metadata
(guard.OUTPUT_PROPERTY). Fingerprints (SHA-256, modification time) are taken by the guard from the
bytes it judged, so a file is hashed only when it is accepted for reading, and read once.

Lock files of office programs (".~lock.*#", "~$*") are left out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.intake.guard import Problem

__all__ = ["WORKBOOK_SUFFIXES", "Intake", "discover", "take_in"]

WORKBOOK_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".ods", ".xlsb"}
_OFFICE_LOCKS = (".~lock", "~$")
log = logging.getLogger("tonghop")


@dataclass
class Intake:
    books: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    refused: dict[str, Problem] = field(default_factory=dict)


def take_in(inbox: Path, skip: Iterable[Path] = ()) -> Intake:
    """Walk `inbox` (see the module's docstring); never raises for what the inbox holds."""
    root = os.path.realpath(inbox)
    skipped = set()
    for folder in skip:
        try:
            info = os.stat(folder)
        except OSError:
            continue
        skipped.add((info.st_dev, info.st_ino))
    intake = Intake()

    def unreadable(error: OSError) -> None:
        name = os.path.relpath(error.filename, inbox) if error.filename else "."
        log.warning("cannot list %s: %r", error.filename, error)
        detail = "không có quyền mở thư mục" if isinstance(error, PermissionError) else "máy tính báo lỗi"
        intake.refused[name if name != "." else os.path.basename(root)] = Problem("folder-unreadable", detail)

    # os.walk: about 7x faster than Path.rglob over 10,000 files; it never follows links to folders
    for folder, dirs, files in os.walk(inbox, onerror=unreadable):
        rel = os.path.relpath(folder, inbox)
        kept = []
        for d in dirs:
            path = os.path.join(folder, d)
            if os.path.islink(path):
                name = d if rel == "." else os.path.join(rel, d)
                intake.refused[name] = Problem("file-special", "một lối tắt (liên kết) tới thư mục khác")
                continue
            try:
                info = os.stat(path)
            except OSError:
                kept.append(d)  # walking it reports what is wrong
                continue
            if (info.st_dev, info.st_ino) in skipped:
                log.info("not reading %s: tonghop's output folder", path)
                continue
            kept.append(d)
        dirs[:] = kept
        for name in files:
            if name.startswith(_OFFICE_LOCKS):
                continue
            rel_name = name if rel == "." else os.path.join(rel, name)
            if os.path.splitext(name)[1].lower() not in WORKBOOK_SUFFIXES:
                intake.others.append(rel_name)
                continue
            problem = _link_out(os.path.join(folder, name), root)
            if problem is not None:
                intake.refused[rel_name] = problem
            else:
                intake.books.append(rel_name)
    intake.books.sort()
    intake.others.sort()
    intake.refused = dict(sorted(intake.refused.items()))
    return intake


def _link_out(path: str, root: str) -> Problem | None:
    """The problem of a link whose target lies outside the inbox `root`, else None (a link that
    leads nowhere or round in circles is the guard's to report, as is any other odd entry)."""
    if not os.path.islink(path):
        return None
    try:
        target = os.path.realpath(path, strict=True)
    except (OSError, RuntimeError):
        return None
    if os.path.commonpath([root, target]) != root:
        log.info("not reading %s: a link to %s, outside the inbox", path, target)
        return Problem("file-special", "một lối tắt (liên kết) tới tệp nằm ngoài hộp thư")
    return None


def discover(inbox: Path) -> tuple[list[str], list[str]]:
    """(workbook-like entries to read, other files) of `inbox`, as take_in finds them (the entries it
    refuses are in neither)."""
    intake = take_in(inbox)
    return intake.books, intake.others
