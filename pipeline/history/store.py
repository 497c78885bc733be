"""The history store: one SQLite file that remembers runs, files, submissions, values, findings and mail.

`open_store(path)` opens (creating it when absent) and migrates the store; `Store.transaction()` is the
one way to write: everything a run records goes in one transaction, so a run killed mid-way leaves the
store as it was. The schema lives in `pipeline/history/migrations/NNNN_name.sql`, applied in order; the
version reached is SQLite's `PRAGMA user_version`, so `sqlite3 lich-su.sqlite 'PRAGMA user_version'` tells it.
Migrations are never edited once released: a change is a new file. Problems with the file itself
(corrupted, read-only, locked by another program, newer than this tonghop) raise `StoreError` with a
Vietnamese message; the store file is then left untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
BUSY_MS = 5_000  # another tonghop writing the same store: wait this long before saying it is busy


class StoreError(Exception):
    """The store cannot be used; the message (Vietnamese) says why and what to do."""


def migrations() -> list[tuple[int, Path]]:
    """(version, file) of every migration, in order; versions are 1, 2, 3... without gaps."""
    found = sorted((int(m.group(1)), p) for p in MIGRATIONS.glob("*.sql") if (m := _NAME.match(p.name)))
    if [v for v, _ in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"store migrations must be numbered 0001, 0002, ... without gaps: {found}")
    return found


def now() -> str:
    """The current local time as ISO 8601 with its UTC offset, to the second (how the store writes times)."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class Store:
    """An open store. Use as a context manager, or call close()."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path, self.conn = path, conn

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT around the block (ROLLBACK when it raises); yields the connection."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(_explain(exc, self.path)) from exc
        try:
            yield self.conn
        except BaseException as exc:
            self.conn.rollback()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(_explain(exc, self.path)) from exc
            raise
        try:
            self.conn.commit()
        except sqlite3.Error as exc:
            self.conn.rollback()
            raise StoreError(_explain(exc, self.path)) from exc

    def explain(self, exc: BaseException) -> str:
        """The Vietnamese sentence for an error met while using this store (see StoreError)."""
        return _explain(exc, self.path)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(path: Path | str, *, readonly: bool = False, check: bool = False) -> Store:
    """Open the store at `path`, creating it (and its folder) when absent and applying any migration
    not yet applied, each in its own transaction. With `readonly`, nothing is created or migrated.
    With `check`, SQLite's structural check runs first (it reads the whole file: 0.17 s for a 31 MB store),
    so that a damaged store is never written to. Raises StoreError (Vietnamese message) when the file
    is not a usable store."""
    path = Path(path)
    if readonly and not path.is_file():
        raise StoreError(f"Chưa có tệp lịch sử «{path}». Tệp này được tạo khi tổng hợp lần đầu.")
    try:
        if not readonly:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not _writable(path):
                raise StoreError(_explain(PermissionError("read-only"), path))
        uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(_explain(exc, path)) from exc
    store = Store(path, conn)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        have, known = store.version, migrations()
        if have > len(known):
            raise StoreError(f"Tệp lịch sử «{path}» do một phiên bản tonghop mới hơn tạo ra (lược đồ {have}, "
                             f"bản này biết đến {len(known)}). Đề nghị cập nhật tonghop.")
        if (check or (not readonly and have < len(known))) and have > 0:
            _check_intact(store)  # never write to a damaged file: it stays as it is, for the officer
        if not readonly and have < len(known):
            for version, script in known[have:]:
                _apply(store, version, script)
    except StoreError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(_explain(exc, path)) from exc
    return store


def _writable(path: Path) -> bool:
    """Whether this process may write the store: the file, and its folder (SQLite writes its journal
    beside the file). Effective ids where the platform has them; Windows checks the read-only flag."""
    eff = os.access in os.supports_effective_ids
    ok = os.access(path.parent, os.W_OK | os.X_OK, effective_ids=eff)
    return ok and (not path.exists() or os.access(path, os.W_OK, effective_ids=eff))


def _check_intact(store: Store) -> None:
    """Raise StoreError when SQLite's structural check finds the file damaged."""
    found = store.conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if found != "ok":
        raise StoreError(_explain(sqlite3.DatabaseError(f"malformed: {found}"), store.path))


def _apply(store: Store, version: int, script: Path) -> None:
    """Run one migration and set user_version, atomically (SQLite's DDL is transactional)."""
    sql = script.read_text(encoding="utf-8")
    with store.transaction() as conn:
        for statement in _statements(sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(version)}")


def _statements(sql: str) -> list[str]:
    """The statements of a migration script (executescript would COMMIT the open transaction)."""
    out, buf = [], ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    if buf.strip() and not buf.strip().startswith("--"):
        raise RuntimeError(f"unfinished statement in migration: {buf.strip()[:80]}")
    return out


def _explain(exc: BaseException, path: Path) -> str:
    """A Vietnamese sentence for what went wrong with the store file (the exception goes to the log)."""
    text = str(exc).lower()
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return (f"Tệp lịch sử «{path}» bị hỏng nên không dùng được; tệp được giữ nguyên để kiểm tra. "
                "Đề nghị đổi tên hoặc chuyển tệp đó đi rồi chạy lại (một tệp lịch sử mới sẽ được tạo).")
    if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError) or "permission" in text:
        return (f"Không ghi được vào tệp lịch sử «{path}» (chỉ được đọc). Đề nghị chọn nơi lưu khác "
                "bằng --store hoặc cấp quyền ghi cho thư mục đó.")
    if "locked" in text or "busy" in text:
        return f"Tệp lịch sử «{path}» đang được một chương trình khác dùng. Đề nghị chờ rồi chạy lại."
    if "unable to open" in text or isinstance(exc, OSError):
        return f"Không mở được tệp lịch sử «{path}». Đề nghị kiểm tra đường dẫn và quyền truy cập thư mục."
    return f"Không dùng được tệp lịch sử «{path}»."


_NOTE_FILE = (
    "INSERT INTO files (sha256, first_seen, received_at, received_via, size) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (sha256) DO UPDATE SET received_at = excluded.received_at, "
    "received_via = excluded.received_via "
    "WHERE excluded.received_via = 'email' AND (files.received_via != 'email' "
    "OR excluded.received_at < files.received_at)"
)


def note_file(conn: sqlite3.Connection, sha256: str, *, seen_at: str, received_at: str | None = None,
              via: str = "inbox", size: int | None = None) -> str:
    """Record that the bytes `sha256` reached the office; returns their received time.

    The first sighting sets `first_seen`. The received time is the earliest known: an email's date
    (`via="email"`) replaces a later `first_seen` guess, never the other way round. Call inside a
    transaction."""
    conn.execute(_NOTE_FILE, (sha256, seen_at, received_at or seen_at, via, size))
    return conn.execute("SELECT received_at FROM files WHERE sha256 = ?", (sha256,)).fetchone()[0]


def note_files(conn: sqlite3.Connection, rows: list[tuple[str, int | None]], *, seen_at: str,
               via: str = "inbox") -> None:
    """`note_file` for many files seen at once: `rows` are (sha256, size). Call inside a transaction."""
    conn.executemany(_NOTE_FILE, [(sha, seen_at, seen_at, via, size) for sha, size in rows])


def received_times(conn: sqlite3.Connection, shas: list[str]) -> dict[str, str]:
    """sha256 → received time of those of `shas` the store knows (a file never seen is absent)."""
    out: dict[str, str] = {}
    for start in range(0, len(shas), _IN_CHUNK):
        part = shas[start:start + _IN_CHUNK]
        sql = f"SELECT sha256, received_at FROM files WHERE sha256 IN ({_marks(len(part))})"
        out.update(conn.execute(sql, part).fetchall())
    return out


_IN_CHUNK = 500  # SQLite before 3.32 allows 999 parameters a statement


def _marks(n: int) -> str:
    return ", ".join("?" * n)
