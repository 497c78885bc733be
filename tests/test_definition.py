"""The report definition loads, is consistent, and a malformed one fails naming the bad entry."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import yaml

from pipeline.definition import (
    DEFAULT_DEFINITION,
    NUMERIC,
    TYPES,
    DefinitionError,
    build_definition,
)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_DEFINITION.read_text(encoding="utf-8"))


def test_loads_with_every_sheet_and_field(definition):
    assert definition.id == "tthtcd-6thang" and definition.version >= 1
    assert [s.name for s in definition.sheets] == [
        "Thông tin chung", "Kết quả hoạt động", "Huy động xã hội", "Hiệu quả", "Phương hướng"]
    assert definition.fields["total.participants"].cell == "D16"
    assert definition.fields["board_total"].total_of == ("board_directors", "board_deputies")
    assert {definition.role(r).id for r in ("unit_code", "unit_name", "period")} == {
        "unit_code", "unit_name", "period"}


def test_every_field_has_a_known_type(definition):
    assert all(f.type in TYPES for f in definition.fields.values())


def test_totals_refer_to_existing_numeric_cells(definition):
    totals = [f for f in definition.fields.values() if f.total_of]
    assert totals
    for total in totals:
        assert total.numeric, total.id
        for part in total.total_of:
            assert part in definition.fields, (total.id, part)
            assert definition.fields[part].numeric, (total.id, part)
            assert not definition.fields[part].total_of, (total.id, part)


def test_cells_are_unique_per_sheet_and_inside_the_layout(definition):
    cells = Counter((f.sheet, f.cell) for f in definition.fields.values())
    assert [k for k, n in cells.items() if n > 1] == []
    lay = definition.layout
    for f in definition.fields.values():
        if definition.sheet(f.sheet).kind == "form":
            assert f.cell.startswith(lay["form"]["value_col"]) and f.row >= lay["form"]["first_row"], f.id
        else:
            assert f.row >= lay["table"]["first_row"], f.id


def test_checks_name_existing_fields_and_rules(definition):
    assert definition.checks
    for check in definition.checks:
        assert check.rule in definition.rules
        for fid in (*check.left, *check.right, check.at):
            assert fid in definition.fields, (check.rule, fid)


def test_every_rule_has_severity_and_message(definition):
    for rule in definition.rules.values():
        assert rule.severity in {"error", "warning"}, rule.id
        assert rule.message.strip(), rule.id


def test_period_labels(definition):
    assert definition.period_label("2020-H1") == "6 tháng đầu năm 2020"
    assert definition.period_label("2020-H2") == "6 tháng cuối năm 2020"
    assert definition.period_label("2020") == "năm 2020"
    with pytest.raises(DefinitionError, match="kỳ báo cáo"):
        definition.period_label("2020-Q1")


def test_build_from_parsed_dict_matches_load(raw, definition):
    built = build_definition(copy.deepcopy(raw), DEFAULT_DEFINITION)
    assert built.fields == definition.fields
    assert NUMERIC <= TYPES


def _field(raw: dict, fid: str) -> dict:
    return next(f for s in raw["sheets"] for f in s.get("fields", []) if f["id"] == fid)


def _unknown_type(raw):
    _field(raw, "area_ha")["type"] = "number"


def _missing_total_part(raw):
    _field(raw, "board_total")["total_of"] = ["board_directors", "board_chairs"]


def _duplicate_id(raw):
    raw["sheets"][2]["fields"].append(dict(_field(raw, "households")))


def _check_missing_field(raw):
    next(c for c in raw["checks"] if c["rule"] == "learners-mismatch")["left"] = "learnerz"


def _unknown_rule(raw):
    raw["checks"][0]["rule"] = "no-such-rule"


def _table_total_missing_row(raw):
    raw["sheets"][1]["table"]["rows"][-1]["total_of"] = ["literacy", "nope"]


def _rule_without_severity(raw):
    del raw["rules"]["female-blank"]["severity"]


def _duplicate_sheet_name(raw):
    raw["sheets"][2]["name"] = raw["sheets"][0]["name"]


def _no_table_layout(raw):
    del raw["layout"]["table"]


def _bad_column_letter(raw):
    raw["layout"]["form"]["value_col"] = "1A"


def _sheets_not_a_list(raw):
    raw["sheets"] = {"general": raw["sheets"][0]}


def _table_without_rows(raw):
    del raw["sheets"][1]["table"]["rows"]


def _column_without_label(raw):
    del raw["sheets"][1]["table"]["columns"][0]["label"]


def _period_without_year(raw):
    raw["periods"]["H2"] = "6 tháng cuối năm"


def _version_text(raw):
    raw["version"] = "một"


def _no_office(raw):
    del raw["office"]


def _office_without_name(raw):
    raw["office"]["name"] = ""


def _by_unit_unknown_field(raw):
    raw["district"]["by_unit"][0]["field"] = "housholds"


def _wildcard_column_of_no_table(raw):
    raw["checks"][0]["left"] = "*.women"


@pytest.mark.parametrize(("breaker", "named"), [
    (_no_table_layout, ["layout.table", "first_value_col"]),
    (_bad_column_letter, ["layout.form.value_col", "1A"]),
    (_sheets_not_a_list, ["sheets", "danh sách"]),
    (_table_without_rows, ["sheets[1].table.rows"]),
    (_column_without_label, ["sheets[1].table.columns[0]", "label"]),
    (_period_without_year, ["periods", "{year}"]),
    (_version_text, ["version", "số nguyên"]),
    (_no_office, ["office"]),
    (_office_without_name, ["office.name"]),
    (_by_unit_unknown_field, ["district.by_unit[0]", "field"]),
    (_wildcard_column_of_no_table, ["checks[0]", "women"]),
    (_unknown_type, ["area_ha", "number"]),
    (_missing_total_part, ["board_total", "board_chairs"]),
    (_duplicate_id, ["households", "trùng"]),
    (_check_missing_field, ["learners-mismatch", "learnerz"]),
    (_unknown_rule, ["checks[0]", "no-such-rule"]),
    (_table_total_missing_row, ["total.classes", "nope.classes"]),
    (_rule_without_severity, ["female-blank", "severity"]),
    (_duplicate_sheet_name, ["Thông tin chung", "trùng"]),
], ids=lambda v: v.__name__.strip("_") if callable(v) else "")
def test_malformed_definition_names_the_bad_entry(raw, breaker, named):
    broken = copy.deepcopy(raw)
    breaker(broken)
    with pytest.raises(DefinitionError) as exc:
        build_definition(broken, DEFAULT_DEFINITION)
    for word in named:
        assert word in str(exc.value)
