"""The history store file: migrations, received times, and the file's own troubles (damaged, read-only,
locked, newer, killed mid-write), each met with a Vietnamese message and the file left as it was."""

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pipeline.history import store as store_mod
from pipeline.history.store import StoreError, migrations, note_file, note_files, open_store, received_times

ROOT = Path(__file__).resolve().parents[1]
NOBODY = 65534


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_store_has_every_table_at_the_current_version(tmp_path):
    path = tmp_path / "sub" / "lich-su.sqlite"
    with open_store(path) as store:
        assert store.version == len(migrations())
    assert {
        "runs",
        "files",
        "submissions",
        "cell_values",
        "findings",
        "district_figures",
        "fields",
    } <= _tables(path)
    with sqlite3.connect(path) as conn:  # readable with the plain sqlite3 shell's library
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(migrations())


def _version_1(path: Path, tmp_path: Path, monkeypatch) -> None:
    """A store as the first release wrote it: only 0001 applied, with a run in it."""
    old = tmp_path / "migrations-v1"
    old.mkdir()
    shutil.copy(store_mod.MIGRATIONS / "0001_core.sql", old)
    monkeypatch.setattr(store_mod, "MIGRATIONS", old)
    with open_store(path) as store, store.transaction() as conn:
        assert store.version == 1
        conn.execute(
            "INSERT INTO runs (started_at, tool_version, definition_id, definition_version, period) "
            "VALUES ('2020-07-20T09:00:00+07:00', '0.1.0', 'tthtcd-6thang', 1, '2020-H1')"
        )
        note_file(conn, "a" * 64, seen_at="2020-06-15T08:00:00+07:00")
    monkeypatch.undo()


def test_a_version_1_store_is_migrated_to_the_current_version(tmp_path, monkeypatch):
    path = tmp_path / "lich-su.sqlite"
    _version_1(path, tmp_path, monkeypatch)
    with open_store(path) as store:
        assert store.version == len(migrations())
        assert store.conn.execute("SELECT period FROM runs").fetchall() == [("2020-H1",)]
        assert received_times(store.conn, ["a" * 64]) == {"a" * 64: "2020-06-15T08:00:00+07:00"}


def test_a_later_migration_is_applied_once_and_keeps_the_data(tmp_path, monkeypatch):
    path = tmp_path / "lich-su.sqlite"
    _version_1(path, tmp_path, monkeypatch)
    later = tmp_path / "migrations-later"
    shutil.copytree(store_mod.MIGRATIONS, later)
    n = len(migrations()) + 1
    (later / f"{n:04d}_note.sql").write_text(
        "ALTER TABLE runs ADD COLUMN note TEXT;\nUPDATE runs SET note = 'migrated';\n", encoding="utf-8"
    )
    monkeypatch.setattr(store_mod, "MIGRATIONS", later)
    with open_store(path) as store:
        assert store.version == n
        assert store.conn.execute("SELECT period, note FROM runs").fetchall() == [("2020-H1", "migrated")]
    with open_store(path) as store:  # applied once: opening again changes nothing
        assert store.version == n


def test_a_failing_migration_leaves_the_store_at_its_version(tmp_path, monkeypatch):
    path = tmp_path / "lich-su.sqlite"
    _version_1(path, tmp_path, monkeypatch)
    later = tmp_path / "migrations-bad"
    shutil.copytree(store_mod.MIGRATIONS, later)
    n = len(migrations()) + 1
    (later / f"{n:04d}_bad.sql").write_text(
        "ALTER TABLE runs ADD COLUMN x TEXT;\nSELECT * FROM nowhere;\n", encoding="utf-8"
    )
    monkeypatch.setattr(store_mod, "MIGRATIONS", later)
    with pytest.raises(StoreError):
        open_store(path)
    monkeypatch.undo()
    with open_store(path) as store:
        assert store.version == len(migrations())
        assert "x" not in {r[1] for r in store.conn.execute("PRAGMA table_info(runs)")}


def test_a_store_from_a_newer_tonghop_is_refused_untouched(tmp_path):
    path = tmp_path / "lich-su.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    before = _digest(path)
    with pytest.raises(StoreError, match="phiên bản tonghop mới hơn"):
        open_store(path)
    assert _digest(path) == before


def _damaged(path: Path) -> None:
    """A store with a run and many values whose middle pages are overwritten (a bad copy, a bad disk)."""
    with open_store(path) as store, store.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (started_at, tool_version, definition_id, definition_version, period) "
            "VALUES ('2020-07-20T09:00:00+07:00', '0.1.0', 'x', 1, '2020-H1')"
        )
        conn.execute("INSERT INTO submissions (run_id, file, status) VALUES (1, 'a.xlsx', 'used')")
        conn.executemany(
            "INSERT INTO cell_values (submission_id, field, value) VALUES (1, ?, ?)",
            [(f"f{i:05d}", float(i)) for i in range(20_000)],
        )
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = b"\xa5" * 8192
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make", ["garbage", "damaged pages"])
def test_a_damaged_store_is_refused_and_left_as_it_is(tmp_path, make):
    path = tmp_path / "lich-su.sqlite"
    if make == "garbage":
        path.write_bytes(b"PK\x03\x04 this is a zip, not a store" * 100)
    else:
        _damaged(path)
    before = _digest(path)
    with pytest.raises(StoreError, match="bị hỏng") as exc:
        open_store(path, check=True)
    assert "giữ nguyên" in str(exc.value) and "Traceback" not in str(exc.value)
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lich-su.sqlite"]  # no journal left beside it


def test_readonly_open_never_creates_a_store(tmp_path):
    with pytest.raises(StoreError, match="Chưa có tệp lịch sử"):
        open_store(tmp_path / "none.sqlite", readonly=True)
    assert not (tmp_path / "none.sqlite").exists()


@contextlib.contextmanager
def unprivileged():
    """Act as an unprivileged user for the block (root ignores file modes); as is when not root. The
    effective ids only, so that the test process gets root back."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.fixture
def shared_tmp():
    """A folder any user may enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="tonghop-store-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("case", ["read-only folder", "read-only file"])
def test_a_store_on_a_read_only_location_gives_a_clear_message(shared_tmp, case):
    folder = shared_tmp / "ro"
    folder.mkdir()
    path = folder / "lich-su.sqlite"
    if case == "read-only file":
        open_store(path).close()
        path.chmod(0o444)
    folder.chmod(0o555)
    before = sorted(p.name for p in folder.iterdir())
    with unprivileged(), pytest.raises(StoreError) as exc, open_store(path) as s, s.transaction() as conn:
        conn.execute("INSERT INTO files VALUES ('a', 'b', 'c', 'inbox', 1)")
    assert "Không ghi được vào tệp lịch sử" in str(exc.value) and "--store" in str(exc.value)
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_store_locked_by_another_writer_says_so(tmp_path, monkeypatch):
    path = tmp_path / "lich-su.sqlite"
    open_store(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(store_mod, "BUSY_MS", 50)
    try:
        with (
            open_store(path) as store,
            pytest.raises(StoreError, match="đang được một chương trình khác dùng"),
            store.transaction(),
        ):
            pass
    finally:
        other.rollback()
        other.close()


def test_a_transaction_is_all_or_nothing(tmp_path):
    path = tmp_path / "lich-su.sqlite"
    with open_store(path) as store:
        with pytest.raises(ZeroDivisionError), store.transaction() as conn:
            note_file(conn, "a" * 64, seen_at="2020-06-15T08:00:00+07:00")
            1 / 0  # noqa: B018
        assert store.conn.execute("SELECT count(*) FROM files").fetchone() == (0,)


# (sightings in order) → the received time and how
RECEIVED = [
    ([("inbox", "2020-06-15T08:00:00+07:00", None)], ("2020-06-15T08:00:00+07:00", "inbox")),
    (
        [("inbox", "2020-06-15T08:00:00+07:00", None), ("inbox", "2020-06-20T08:00:00+07:00", None)],
        ("2020-06-15T08:00:00+07:00", "inbox"),
    ),
    (
        [
            ("inbox", "2020-06-15T08:00:00+07:00", None),
            ("email", "2020-06-21T08:00:00+07:00", "2020-06-12T17:30:00+07:00"),
        ],
        ("2020-06-12T17:30:00+07:00", "email"),
    ),
    (
        [
            ("email", "2020-06-13T08:00:00+07:00", "2020-06-12T17:30:00+07:00"),
            ("inbox", "2020-06-10T08:00:00+07:00", None),
        ],
        ("2020-06-12T17:30:00+07:00", "email"),
    ),
    (
        [
            ("email", "2020-06-13T08:00:00+07:00", "2020-06-12T17:30:00+07:00"),
            ("email", "2020-06-14T08:00:00+07:00", "2020-06-11T09:00:00+07:00"),
        ],
        ("2020-06-11T09:00:00+07:00", "email"),
    ),
    (
        [
            ("email", "2020-06-13T08:00:00+07:00", "2020-06-11T09:00:00+07:00"),
            ("email", "2020-06-14T08:00:00+07:00", "2020-06-12T17:30:00+07:00"),
        ],
        ("2020-06-11T09:00:00+07:00", "email"),
    ),
]


@pytest.mark.parametrize(("sightings", "expected"), RECEIVED)
def test_received_time_is_the_earliest_known_and_an_email_date_wins(tmp_path, sightings, expected):
    with open_store(tmp_path / "s.sqlite") as store:
        for via, seen, received in sightings:
            with store.transaction() as conn:
                if via == "inbox":
                    note_files(conn, [("a" * 64, 10)], seen_at=seen)
                else:
                    note_file(conn, "a" * 64, seen_at=seen, received_at=received, via="email", size=10)
        got = store.conn.execute("SELECT received_at, received_via FROM files").fetchall()
        assert got == [expected]
        assert store.conn.execute("SELECT first_seen FROM files").fetchone()[0] == sightings[0][1]


def test_kill_9_during_the_write_leaves_the_store_intact(tmp_path):
    """A process killed inside the store's write transaction (a hot journal beside the file): the next
    open rolls it back; the store passes SQLite's integrity check and holds exactly what it held."""
    path = tmp_path / "lich-su.sqlite"
    with open_store(path) as store, store.transaction() as conn:
        note_file(conn, "a" * 64, seen_at="2020-06-15T08:00:00+07:00")
    ready = tmp_path / "ready"
    code = (
        "import time\nfrom pipeline.history.store import open_store\n"
        f"s = open_store({str(path)!r})\n"
        "with s.transaction() as c:\n"
        "    c.executemany(\"INSERT INTO files VALUES (?, 'x', 'x', 'inbox', 1)\", "
        "[(f'{i:064d}',) for i in range(200000)])\n"
        "    c.execute('DELETE FROM files WHERE sha256 = ?', ('a' * 64,))\n"
        f"    open({str(ready)!r}, 'w').close()\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        for _ in range(6000):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert ready.exists(), "the writer never reached its transaction"
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    with open_store(path, check=True) as store:
        assert store.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert store.conn.execute("SELECT sha256 FROM files").fetchall() == [("a" * 64,)]
