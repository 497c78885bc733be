"""The committed sample inbox still fits the current template and carries what the script meant."""

from pathlib import Path

import pytest

from pipeline.definition import load_definition
from pipeline.run import Options, check_files
from pipeline.samples import make_samples
from pipeline.units import load_units

INBOX = Path(__file__).resolve().parent.parent / "inbox"


@pytest.fixture(scope="module")
def intended(tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def committed():
    files = sorted(p for p in INBOX.rglob("*") if p.suffix in {".xlsx", ".xls", ".ods"})
    names = [str(p.relative_to(INBOX)) for p in files]
    return check_files(
        files, load_definition(), load_units(), names=names, options=Options(period="2020-H1", isolate=False)
    )


def test_committed_inbox_has_the_files_the_script_makes(intended):
    committed_names = {str(p.relative_to(INBOX)) for p in INBOX.rglob("*") if p.is_file()}
    assert set(intended) <= committed_names, "run `make samples` and commit inbox/"


def test_each_sample_reads_with_its_intended_figures(intended, committed):
    subs = committed.submissions
    values = committed.values.join(subs[["file", "unit_code"]], on="submission")
    for name, want in intended.items():
        row = subs[subs["file"] == name]
        assert len(row) == 1, f"{name} was not read as a submission"
        assert row["unit_code"].iloc[0] == want["unit_code"], name
        got = values[values["file"] == name].set_index("field")["value"]
        for fid, v in want["values"].items():
            if v is None:
                assert pd_isna(got[fid]), (name, fid)
            else:
                assert got[fid] == pytest.approx(float(v)), (name, fid, got[fid], v)


def test_duc_chinh_sample_carries_the_seed_error(committed):
    f = committed.findings
    dc = f[(f["unit_code"] == "07093") & (f["rule"] == "total-mismatch")]
    assert dc[["cell", "value", "expected"]].values.tolist() == [["D16", "8.28", 828.0]]


def pd_isna(v) -> bool:
    import pandas as pd

    return bool(pd.isna(v))
