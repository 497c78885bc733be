"""The templates shipped in input_templates/2020-H1/ are what `tonghop templates` writes now: an officer
finds the forms to send without running anything, and they never fall behind the definition."""

import re
import zipfile
from pathlib import Path

import pytest

from pipeline.definition import load_definition
from pipeline.units import load_units
from pipeline.writers.template import write_templates

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "input_templates" / "2020-H1"
STALE = ("input_templates/2020-H1 is out of date with the template: run `make templates` "
         "(tonghop templates --period 2020-H1) and commit input_templates/2020-H1/")
# The only part that depends on when a template was written: its document dates in docProps/core.xml.
_DATES = re.compile(rb"(<dcterms:(created|modified)\b[^>]*>)[^<]*(</dcterms:\2>)")


def _contents(path: Path) -> dict[str, bytes]:
    """Every member of a workbook, unpacked, with the document dates blanked."""
    with zipfile.ZipFile(path) as zf:
        return {i.filename: _DATES.sub(rb"\1\3", zf.read(i)) for i in zf.infolist()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("templates")
    return {p.name: p for p in write_templates(load_definition(), load_units(), "2020-H1", out)}


def test_the_blank_template_and_one_per_unit_are_shipped(generated):
    shipped = {p.name for p in SHIPPED.glob("*.xlsx")}
    assert shipped == set(generated), STALE
    assert "mau-bao-cao-2020-H1.xlsx" in shipped and len(shipped) == 1 + len(load_units())


def test_shipped_templates_are_what_tonghop_templates_writes(generated):
    differ = [name for name, path in generated.items()
              if (SHIPPED / name).exists() and _contents(SHIPPED / name) != _contents(path)]
    assert not differ, f"{STALE} (differ: {', '.join(sorted(differ))})"


def test_the_folder_says_what_the_templates_are_and_how_to_make_others():
    text = (SHIPPED / "README.txt").read_text(encoding="utf-8")
    assert "mau-bao-cao-2020-H1.xlsx" in text
    assert "tonghop templates --period 2020-H2" in text and "make templates PERIOD=2020-H2" in text
