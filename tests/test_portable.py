"""As on Windows: worker processes started with `spawn` (no fork), no `resource` and no `fcntl` module.
The whole job (consolidate, check) runs in a process of its own where a sitecustomize module takes
those away (they stay away in the spawned workers, which load it too), and gives the same outputs as
a run with everything."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import python_calamine as pc
from processes import run
from sample_inbox import make_samples

from pipeline.cli.commands import main

PERIOD = "2020-H1"
WINDOWS_LIKE = """
import sys
sys.modules["resource"] = None  # import resource -> ImportError, as on Windows
sys.modules["fcntl"] = None
import multiprocessing
multiprocessing.get_all_start_methods = lambda: ["spawn"]  # what Windows offers
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("portable")
    inbox = base / "inbox"
    make_samples(inbox, PERIOD)
    site = base / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WINDOWS_LIKE, encoding="utf-8")
    args = ["--inbox", str(inbox), "--period", PERIOD, "--quiet", "--jobs", "2", "--timeout", "120"]
    assert main(["consolidate", "--out", str(base / "posix"), *args]) == 0
    proc = run(["consolidate", "--out", str(base / "windows"), *args], env={"PYTHONPATH": str(site)})
    return {"base": base, "inbox": inbox, "site": site, "proc": proc}


def _untimed(cell):
    """A time of day (when a file was first seen: each run's own start without an earlier record) is
    the one thing two runs of the same inbox may differ in."""
    return "<time>" if isinstance(cell, dt.datetime) else cell


def contents(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.suffix == ".xlsx":
            wb = pc.CalamineWorkbook.from_path(str(p))
            out[rel] = {n: [[_untimed(c) for c in row] for row in wb.get_sheet_by_name(n).to_python()]
                        for n in wb.sheet_names}
        elif p.suffix == ".csv":
            out[rel] = p.read_bytes()
    return out


def test_the_environment_is_windows_like(runs):
    check = ("import multiprocessing, sys; "
             "print(multiprocessing.get_all_start_methods(), sys.modules['resource'], sys.modules['fcntl'])")
    out = subprocess.run([sys.executable, "-c", check], env={"PYTHONPATH": str(runs["site"])}, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "['spawn'] None None"


def test_consolidate_under_spawn_without_resource_and_fcntl(runs):
    proc = runs["proc"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    base = runs["base"]
    posix, windows = contents(base / "posix" / PERIOD), contents(base / "windows" / PERIOD)
    assert len([k for k in windows if k.startswith("feedback/")]) == 18  # written by the pool's workers
    assert posix == windows
    log = (base / "windows" / PERIOD / "tonghop.log").read_text(encoding="utf-8")
    assert log.count("reader memory cap: no 'resource' module here") == 1  # said once, however many readers
    assert sorted(p.name for p in (base / "windows").iterdir()) == [PERIOD, "lich-su.sqlite"]  # no lock file
    manifest = json.loads((base / "windows" / PERIOD / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["units_received"] == 18


def test_check_under_spawn_without_resource_and_fcntl(runs):
    files = sorted(map(str, runs["inbox"].glob("*.xlsx")))
    proc = run(["check", "--json", "--period", PERIOD, *files], env={"PYTHONPATH": str(runs["site"])})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr  # the samples hold errors on purpose
    here = run(["check", "--json", "--period", PERIOD, *files])
    assert json.loads(proc.stdout) == json.loads(here.stdout)
    assert pd.DataFrame(json.loads(proc.stdout))["rule"].notna().all()


def test_the_memory_cap_holds_without_resource(runs, tmp_path):
    """The watchdog ends a reader whose memory runs away: the file gets its finding, the others are read."""
    script = tmp_path / "runaway.py"
    script.write_text(
        "import sys, time\n"
        "from pipeline.intake.isolation import map_isolated\n"
        "def grow(item):\n"
        "    if item == 'big':\n"
        "        hold = [bytearray(64 << 20) for _ in range(64)]\n"  # 4 GB, touched as it is made
        "        time.sleep(600)\n"
        "    return item\n"
        "if __name__ == '__main__':\n"  # (a spawned worker imports this module too)
        "    out = list(map_isolated(grow, ['a', 'big', 'b'], memory_mb=512, timeout=300))\n"
        "    print([(i, getattr(r, 'detail', r)) for i, r in out])\n", encoding="utf-8")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(script)], env={"PYTHONPATH": f"{runs['site']}:{root}"},
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[('a', 'a'), ('big', 'tệp cần quá nhiều bộ nhớ để đọc'), ('b', 'b')]"
