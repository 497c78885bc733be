"""The benchmark's generator: realistic, consistent figures, and slips labelled for computing recall."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import figures  # noqa: E402

UNIT = {"unit_type": "xã", "district_code": "001", "province_code": "01", "highland": False}


@pytest.mark.parametrize("kind", ["phường", "thị trấn", "xã"])
@pytest.mark.parametrize("highland", [False, True])
def test_figures_are_consistent(kind, highland):
    for i in range(50):
        v = figures.realistic(UNIT | {"unit_type": kind, "highland": highland}, random.Random(i))
        assert 2.2 <= v["population"] / v["households"] <= 7
        for col in ("classes", "participants", "female"):
            assert v[f"total.{col}"] == sum(v.get(f"{r}.{col}", 0) for r in figures.ROWS)
        assert all(v.get(f"{r}.female", 0) <= v.get(f"{r}.participants", 0) for r in figures.ROWS)
        assert v["poor_households"] + v["near_poor_households"] <= v["households"]
        assert v["learners"] == v["total.participants"] and v["board_total"] == 1 + v["board_deputies"]


def test_figures_are_skewed_like_the_country():
    """City wards are an order of magnitude denser and richer than highland communes."""

    def median(kind, highland, field):
        xs = sorted(
            figures.realistic(UNIT | {"unit_type": kind, "highland": highland}, random.Random(i))[field]
            for i in range(200)
        )
        return xs[100]

    assert median("phường", False, "population") > 2.5 * median("xã", True, "population")
    assert median("xã", True, "area_ha") > 25 * median("phường", False, "area_ha")
    assert median("phường", False, "income_per_capita_mn") > 2 * median("xã", True, "income_per_capita_mn")
    assert median("xã", True, "poor_households") > 5 * median("phường", False, "poor_households")


def test_the_same_seed_gives_the_same_figures():
    assert figures.realistic(UNIT, random.Random("a")) == figures.realistic(UNIT, random.Random("a"))
    assert figures.realistic(UNIT, random.Random("a")) != figures.realistic(UNIT, random.Random("b"))


@pytest.mark.parametrize("kind", figures.SLIP_KINDS)
def test_every_slip_is_applied_and_labelled(kind):
    clean = figures.realistic(UNIT, random.Random(7))
    v = dict(clean)
    label = figures.make_slip(v, kind, random.Random(1))
    assert label is not None and label["kind"] == kind
    field = label["field"]
    assert v[field] != clean[field]
    if label["factor"]:
        assert v[field] == pytest.approx(clean[field] * label["factor"])
        if "." in field:  # the total follows its row, as the template's formula would
            col = field.split(".")[1]
            assert v[f"total.{col}"] == sum(v.get(f"{r}.{col}", 0) for r in figures.ROWS)
    if kind == "classes-over-participants":
        row = field.split(".")[0]
        assert v[f"{row}.classes"] > v[f"{row}.participants"]
    if kind == "date-year-after":
        assert v["report_date"].year == clean["report_date"].year + 1


def test_no_slip_where_there_is_nothing_to_slip():
    v = figures.realistic(UNIT, random.Random(7))
    for row in figures.ROWS:
        v[f"{row}.classes"] = 0
    assert figures.make_slip(v, "x1000:*.participants", random.Random(1)) is None
    assert figures.make_slip(dict(v, conferences=0), "x10:conferences", random.Random(1)) is None


def test_the_recall_report_runs(tmp_path):
    out = tmp_path / "p.json"
    cmd = [
        sys.executable,
        str(ROOT / "bench" / "plausibility.py"),
        "--n",
        "300",
        "--seed",
        "t",
        "--rate",
        "0.3",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "| x1000 |" in proc.stdout and "false warnings of the new rules per 100 clean units" in proc.stdout
    r = json.loads(out.read_text(encoding="utf-8"))
    assert r["units"] > 250 and r["clean_units"] > 100 and r["plausibility_slips"] > 50
    for kind, k in r["kinds"].items():
        assert kind in figures.SLIP_KINDS and 0 <= k.get("cell", 0) <= k.get("unit", 0) <= k["n"]
    assert sum(k.get("cell", 0) for name, k in r["kinds"].items() if name.startswith("x1000:")) > 0
