"""Atomic output: write to a temporary file in the destination folder, then rename over the target.

The file gets the permissions any program's new file gets (0666 less the umask): tempfile.mkstemp
makes its files 0600, which would leave every output readable by its owner alone.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    """The process's umask (read without changing it where /proc tells it, else set and put back)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # read once: umask() is process-wide and changing it is not thread-safe


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it to `target`, else delete it.

    The temporary file is in the same folder because os.replace is atomic only within one filesystem.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:50]}.", suffix=".tmp", dir=target.parent)
    try:
        with contextlib.suppress(OSError):  # (Windows: only the read-only bit; nothing to do)
            os.fchmod(fd, _MODE) if hasattr(os, "fchmod") else os.chmod(tmp, _MODE)
    finally:
        os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(target: Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding=encoding)
