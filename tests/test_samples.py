"""The committed samples (samples/2020-H1/) are what `make samples` writes, byte for byte, every time;
they read as intended, and every sample workbook says it is one."""

import zipfile
from pathlib import Path

import pandas as pd
import pytest
import python_calamine as pc
from sample_inbox import make_samples

from pipeline.definition import META_SHEET, SAMPLE_KEY, load_definition
from pipeline.intake.reading import ReadOptions
from pipeline.units import load_units
from pipeline.wiring import check_files

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples" / "2020-H1"
STALE = "samples/2020-H1 is out of date: run `make samples` and commit samples/"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """(folder, intended figures) of a fresh `make samples`."""
    folder = tmp_path_factory.mktemp("samples")
    return folder, make_samples(folder)


def _files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def committed():
    files = sorted(p for p in SAMPLES.rglob("*") if p.suffix in {".xlsx", ".xls", ".ods"})
    names = [p.relative_to(SAMPLES).as_posix() for p in files]
    return check_files(
        files, load_definition(), load_units(), names=names, period="2020-H1",
        options=ReadOptions(isolate=False),
    )


def test_samples_live_apart_from_the_inbox():
    assert SAMPLES.is_dir()
    assert not [p for p in (ROOT / "inbox").rglob("*") if p.suffix in {".xlsx", ".xls", ".ods"}], (
        "inbox/ is for real reports; samples live in samples/")


def test_make_samples_writes_the_same_bytes_every_time(generated, tmp_path):
    first, _ = generated
    make_samples(tmp_path)
    a, b = _files(first), _files(tmp_path)
    assert list(a) == list(b)
    differ = [name for name in a if a[name].read_bytes() != b[name].read_bytes()]
    assert not differ, f"not byte-identical from one run to the next: {differ}"


def _members(path: Path) -> dict[str, bytes]:
    """What a file holds: a zip's members unpacked (compression may differ with the zlib version), else
    its bytes."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return {i.filename: zf.read(i) for i in zf.infolist()}
    return {"": path.read_bytes()}


def test_committed_samples_are_what_make_samples_writes(generated):
    folder, _ = generated
    want, have = _files(folder), _files(SAMPLES)
    assert set(want) <= set(have), STALE
    differ = [name for name in want if _members(want[name]) != _members(have[name])]
    assert not differ, f"{STALE} ({', '.join(differ)})"


def test_every_sample_workbook_is_marked_as_a_sample(committed):
    for path in SAMPLES.rglob("*.xls*"):
        meta = pc.CalamineWorkbook.from_path(str(path)).get_sheet_by_name(META_SHEET).to_python()
        assert [SAMPLE_KEY, "1"] in [[str(c) for c in row[:2]] for row in meta], path
    subs = committed.submissions
    assert len(subs) == 20 and subs["sample"].all()


def test_each_sample_reads_with_its_intended_figures(generated, committed):
    _, intended = generated
    subs = committed.submissions
    values = committed.values.join(subs[["file", "unit_code"]], on="submission")
    for name, want in intended.items():
        row = subs[subs["file"] == name]
        assert len(row) == 1, f"{name} was not read as a submission"
        assert row["unit_code"].iloc[0] == want["unit_code"], name
        got = values[values["file"] == name].set_index("field")["value"]
        for fid, v in want["values"].items():
            if v is None:
                assert pd.isna(got[fid]), (name, fid)
            else:
                assert got[fid] == pytest.approx(float(v)), (name, fid, got[fid], v)


def test_duc_chinh_sample_carries_the_seed_error(committed):
    f = committed.findings
    dc = f[(f["unit_code"] == "07093") & (f["rule"] == "total-mismatch")]
    assert dc[["cell", "value", "expected"]].values.tolist() == [["D16", "8.28", 828.0]]


def test_templates_for_real_wards_are_not_marked(tmp_path):
    from pipeline.writers.template import write_templates

    for path in write_templates(load_definition(), load_units().head(2), "2020-H1", tmp_path):
        meta = pc.CalamineWorkbook.from_path(str(path)).get_sheet_by_name(META_SHEET).to_python()
        assert SAMPLE_KEY not in [row[0] for row in meta], path
