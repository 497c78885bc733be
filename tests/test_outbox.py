"""pipeline.outbox: the outputs of a run appear whole or not at all, with the permissions any program's
files get, and nothing of the run is left behind (staging folder, lock file) however it ends."""

from __future__ import annotations

import hashlib
import os
import resource
import stat
import sys
from pathlib import Path

import pytest
from processes import run
from sample_inbox import make_samples

from pipeline.cli.commands import main
from pipeline.outbox import OutputError, _Lock, open_outbox

PERIOD = "2020-H1"


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("outbox") / "inbox"
    make_samples(folder, PERIOD)
    return folder


def consolidate(inbox: Path, out: Path, *extra: str) -> int:
    return main(["consolidate", "--inbox", str(inbox), "--out", str(out), "--period", PERIOD, "--quiet",
                 "--no-feedback", *extra])


def hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_outputs_have_the_permissions_the_umask_gives(inbox, tmp_path, umask, mode):
    proc = run(["consolidate", "--inbox", str(inbox), "--out", str(tmp_path), "--period", PERIOD, "--quiet"],
               preexec=lambda: os.umask(umask))
    assert proc.returncode == 0, proc.stderr
    files = [p for p in (tmp_path / PERIOD).rglob("*") if p.is_file()]
    assert len(files) > 20
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {mode}


def test_no_lock_file_is_left_and_one_left_by_a_killed_run_is_no_lock(inbox, tmp_path):
    (tmp_path / f".{PERIOD}.lock").write_text("")  # what a kill -9 leaves: the system released its lock
    assert consolidate(inbox, tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [PERIOD, "lich-su.sqlite"]


def test_a_run_holding_the_lock_keeps_a_second_one_out(inbox, tmp_path, capsys):
    with open_outbox(tmp_path, PERIOD):
        assert consolidate(inbox, tmp_path) == 3
    assert "Một lần chạy khác đang ghi" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # the first one left nothing either


def test_a_file_where_the_period_folder_goes_is_refused_and_kept(inbox, tmp_path, capsys):
    (tmp_path / PERIOD).write_text("ghi chú của cán bộ")
    assert consolidate(inbox, tmp_path) == 3
    err = capsys.readouterr().err
    assert "là một tệp chứ không phải thư mục" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [PERIOD]  # no ".2020-H1.old-<pid>" beside it
    assert (tmp_path / PERIOD).read_text() == "ghi chú của cán bộ"


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_disk_full_from_the_start_is_one_clean_line_and_leaves_nothing(inbox, tmp_path):
    """Every write fails from the start (RLIMIT_FSIZE 0: as a full disk, but EFBIG): exit 3, one line,
    the previous outputs as they were, no staging folder, no lock file."""
    assert consolidate(inbox, tmp_path) == 0
    before = hashes(tmp_path)

    def full() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    proc = run(["consolidate", "--inbox", str(inbox), "--out", str(tmp_path), "--period", PERIOD, "--quiet"],
               preexec=full)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Không ghi được kết quả"), proc.stderr
    assert "tệp vượt quá kích thước hệ thống cho phép" in lines[0]
    assert hashes(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [PERIOD, "lich-su.sqlite"]  # (not even an empty log)


def test_a_full_disk_when_the_staging_folder_is_made(inbox, tmp_path, monkeypatch, capsys):
    real = Path.mkdir

    def full(self, *args, **kwargs):
        if self.name.startswith(f".{PERIOD}.partial-"):
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", full)
    assert consolidate(inbox, tmp_path) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ổ đĩa đã đầy" in err and "No space" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_lock_without_fcntl_takes_over_a_file_left_by_a_dead_process(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setitem(sys.modules, "msvcrt", None)
    path = tmp_path / ".lock"
    first = _Lock(path)
    assert first.acquire() and first.kind == "exclusive"
    assert not _Lock(path).acquire()  # held by a live process: this one
    first.release()
    assert not path.exists()
    path.write_text("999999999")  # a process that is gone
    second = _Lock(path)
    assert second.acquire()
    second.release()


def test_open_outbox_removes_its_staging_folder_on_failure(tmp_path):
    with pytest.raises(OutputError), open_outbox(tmp_path, PERIOD) as box:
        (box.staging / "x.csv").write_text("x")
        raise OSError(28, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{PERIOD}-loi.log"]
