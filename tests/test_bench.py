"""The benchmark script runs end to end on a small N and prints its table (it is a script, not a test)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["files", "files_per_second", "peak_rss_mb", "naive_seconds", "naive_read_seconds",
        "read_speedup_vs_naive", "job_speedup_vs_naive", "floor_seconds", "job_over_floor",
        "job_seconds", "job_seconds_no_feedback", "with_feedback_seconds", "validate_ms_per_file"]


@pytest.mark.slow
def test_bench_runs_on_a_small_inbox(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench.py"), "--n", "30", "--repeat", "1",
           "--cache", str(cache), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for text in ("full job", "--no-feedback", "read", "validate", "files/s", "peak RSS", "naive",
                 "floor", "read speedup vs naive", "job speedup vs naive", "job over floor"):
        assert text in proc.stdout, (text, proc.stdout)

    r = json.loads(out.read_text(encoding="utf-8"))
    for key in KEYS:
        assert isinstance(r[key], (int, float)) and r[key] > 0, (key, r.get(key))
    assert r["files"] == len(list((cache / "n30" / "inbox").rglob("*.xls*")))
    for stages in (r["stages"], r["stages_no_feedback"]):
        for name in ("discover", "read", "validate", "consolidate", "write"):
            assert stages[name] >= 0, (name, stages)
        assert stages["read"] > 0 and stages["validate"] > 0
    assert r["stages"]["feedback"] > 0
    assert len({p.suffix for p in (cache / "n30" / "inbox").rglob("*.xls*")}) == 2, "a mix of .xlsx and .xls"
    units = (cache / "n30" / "units.csv").read_text(encoding="utf-8").splitlines()
    assert units[0].split(",")[:2] == ["unit_code", "unit_name"] and len(units) == 31
    labels = (cache / "n30" / "labels.csv").read_text(encoding="utf-8").splitlines()
    assert labels[0] == "unit_code,file,slip,field,factor"
    assert all((cache / "n30" / "inbox" / line.split(",")[1]).is_file() for line in labels[1:])


def test_bench_times_a_baseline_side_by_side_and_skips_what_it_is_told(tmp_path):
    """--baseline runs another copy of the code on the same inbox (here: this tree itself)."""
    cache, out = tmp_path / "cache", tmp_path / "results.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench.py"), "--n", "30", "--repeat", "1", "--cache",
           str(cache), "--out", str(out), "--skip", "naive,floor,feedback", "--baseline", str(ROOT)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--no-feedback, side by side" in proc.stdout
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["runs"]["naive"] == [] and r["runs"]["floor"] == [] and r["runs"]["with_feedback"] == []
    assert r["baseline"]["stages_no_feedback"]["validate"] > 0 and r["stages_no_feedback"]["validate"] > 0
