"""The report definition: `schemas/<id>.yaml` read, checked and laid out.

`load_definition(path)` returns a `Definition` whose `fields` hold every input and total cell with its
sheet, label, type, constraints, consolidation and template address. Everything else (template,
reader, schemas, checks, consolidation) derives from it. A malformed file raises `DefinitionError`
naming the bad entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml
from openpyxl.utils import column_index_from_string, get_column_letter

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
DEFAULT_DEFINITION = SCHEMAS_DIR / "tthtcd-6thang.yaml"
DEFAULT_UNITS = SCHEMAS_DIR / "units" / "dong-trieu-2020.csv"
GENERIC_RULES = SCHEMAS_DIR / "rules.yaml"

META_SHEET = "_tonghop"  # the template's hidden sheet: key in column A, value in column B
META_KEYS = ("template_id", "template_version", "unit_code", "period")
SAMPLE_KEY = "sample"  # meta key written only by the samples generator ("1"): the figures are made up
RESERVED_SHEETS = {META_SHEET, "Hướng dẫn", "Góp ý"}  # written by the renderer around the report's sheets
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
TYPES = {"integer", "decimal", "percent", "text", "date", "choice"}
NUMERIC = {"integer", "decimal", "percent"}
METHODS = {"sum", "weighted_mean", "count", "none"}
SEVERITIES = {"error", "warning"}
CHECK_KINDS = {"compare", "required_if", "ratio_between"}
OPS = {"le", "eq", "ge"}
IDENTITY_ROLES = frozenset({"unit_code", "unit_name", "period"})  # pre-filled and locked in a unit's template
# report_date: the date the ward signed the report; of two files of a unit the later report wins
ROLES = IDENTITY_ROLES | {"report_date"}
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_PERIOD = re.compile(r"^(\d{4})(?:-(H1|H2))?$")


class DefinitionError(ValueError):
    """The report definition is malformed; the message names the entry."""


@dataclass(frozen=True, slots=True)
class Field:
    """One cell of the report: a form field or a table cell (`row.column`)."""

    id: str
    sheet: str  # sheet id
    label: str
    type: str
    row: int  # 1-based template row
    col: int  # 1-based template column
    unit: str = ""
    required: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    role: str = ""
    total_of: tuple[str, ...] = ()
    method: str = "none"
    weight: str = ""
    lines: int = 1
    table_row: str = ""  # table cells: the row id and column id
    table_col: str = ""

    @property
    def cell(self) -> str:
        """The template address in A1 notation."""
        return f"{get_column_letter(self.col)}{self.row}"

    @property
    def numeric(self) -> bool:
        return self.type in NUMERIC


@dataclass(frozen=True, slots=True)
class Sheet:
    id: str
    name: str
    title: str
    kind: str  # "form" or "table"
    fields: tuple[str, ...]
    rows: tuple[tuple[str, str], ...] = ()  # table: (row id, label)
    columns: tuple[tuple[str, str, str], ...] = ()  # table: (column id, label, group)
    number_label: str = ""
    table_label: str = ""
    signature: bool = False


@dataclass(frozen=True, slots=True)
class Check:
    """One concrete cross-check instance (wildcards already expanded)."""

    rule: str
    kind: str
    left: tuple[str, ...]
    right: tuple[str, ...] = ()
    op: str = "le"
    at: str = ""
    blank_only: bool = False
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class Office:
    """The office that collects the report and signs the consolidated one (the definition's `office:`).

    `superior` and `recipients` may hold "{district}" (the district's name from the units list) and
    "{place}" (the same without its kind: "Thị xã Đông Triều" → "Đông Triều")."""

    name: str  # "Phòng Giáo dục và Đào tạo": the issuing body
    short: str  # "Phòng GD&ĐT": how messages to wards name it
    superior: str = ""  # "UBND {district}"
    symbol: str = ""  # "BC-PGDĐT": the report's number and symbol is "Số: …/BC-PGDĐT"
    subject: str = ""  # what the consolidated report is about
    recipients: tuple[str, ...] = ()  # "Nơi nhận"
    signature: tuple[str, ...] = ()  # the signer's authority and title, top down


@dataclass(frozen=True, slots=True)
class Chart:
    """A bar chart of the district workbook: a bar per unit of one field (`by="unit"`), or a bar per row
    of a table sheet for one of its columns (`by="row"`)."""

    by: str
    title: str
    axis: str = ""  # the values' axis name
    field: str = ""  # by unit
    sheet: str = ""  # by row: the table sheet's id and column id
    column: str = ""


@dataclass(frozen=True, slots=True)
class DistrictLayout:
    """What the district workbook shows besides the report itself (the definition's `district:`)."""

    by_unit: tuple[tuple[str, str], ...] = ()  # (field id, header) on "Theo đơn vị"
    charts: tuple[Chart, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: str
    message: str
    # a finding of this rule is dropped where the same cell has a finding of one of these (it would only
    # repeat it: "required" on a cell whose text could not be read as a number)
    suppressed_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChangeLimit:
    """How much a field's figure may plausibly change against an earlier period (the `history` section)."""

    field: str
    rise: float | None  # % above the earlier figure beyond which it is flagged (None: any rise is fine)
    fall: float | None  # % below it
    min_previous: float = 0.0  # earlier figures below this are not compared: 2 → 6 is +200 % and says nothing


@dataclass(frozen=True)
class History:
    """The definition's `history` section: which earlier periods a figure is compared with (in order;
    "Tổng hợp" shows the first the store has) and the plausible change of each field."""

    compare_with: tuple[str, ...] = ("previous", "same_last_year")
    limits: tuple[ChangeLimit, ...] = ()

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The limits indexed by field: rise, fall, min_previous (NaN where no limit)."""
        rows = [(lim.field, lim.rise, lim.fall, lim.min_previous) for lim in self.limits]
        return pd.DataFrame(rows, columns=["field", "rise", "fall", "min_previous"], dtype=object).astype(
            {"rise": float, "fall": float, "min_previous": float}).set_index("field")


@dataclass(frozen=True)
class Definition:
    id: str
    version: int
    title: str
    organisation: str
    recipient: str
    signature: tuple[str, ...]
    periods: dict[str, str]
    choices: dict[str, tuple[str, ...]]
    instructions: tuple[str, ...]
    layout: dict
    sheets: tuple[Sheet, ...]
    fields: dict[str, Field]
    checks: tuple[Check, ...]
    rules: dict[str, Rule]
    office: Office = field(default_factory=lambda: Office("", ""))
    district: DistrictLayout = field(default_factory=DistrictLayout)
    path: Path = field(default=DEFAULT_DEFINITION)
    plausibility: Plausibility | None = None  # build_definition always sets one (empty without the section)
    history: History = field(default_factory=lambda: History())

    def sheet(self, sheet_id: str) -> Sheet:
        return next(s for s in self.sheets if s.id == sheet_id)

    def role(self, role: str) -> Field | None:
        """The field with this role (every definition has the identity roles), or None."""
        return next((f for f in self.fields.values() if f.role == role), None)

    def total_formula(self, fid: str) -> str:
        """The template's formula of a total: `=SUM(D6:D15)` for a column run of parts, else `=B14+B15`
        (parts on other sheets named, quoted)."""
        f = self.fields[fid]
        parts = [self.fields[p] for p in f.total_of]
        rows = [p.row for p in parts]
        if (len(parts) > 2 and all(p.sheet == f.sheet and p.col == f.col for p in parts)
                and rows == list(range(rows[0], rows[0] + len(rows)))):
            return f"=SUM({parts[0].cell}:{parts[-1].cell})"

        def ref(p: Field) -> str:
            if p.sheet == f.sheet:
                return p.cell
            return "'" + self.sheet(p.sheet).name.replace("'", "''") + "'!" + p.cell

        return "=" + "+".join(ref(p) for p in parts)

    def period_label(self, period: str) -> str:
        """Vietnamese label of a period id: "2020-H1" → "6 tháng đầu năm 2020"."""
        m = _PERIOD.match(period or "")
        if not m:
            raise DefinitionError(f"kỳ báo cáo không hợp lệ: {period!r} (dạng 2020-H1, 2020-H2 hoặc 2020)")
        return self.periods[m.group(2) or "year"].format(year=m.group(1))

    @property
    def template_key(self) -> str:
        return f"{self.id} v{self.version}"

    @cached_property
    def frame(self) -> pd.DataFrame:
        """The fields as a frame indexed by field id (for vectorised joins)."""
        rows = [
            {
                "field": f.id,
                "sheet_id": f.sheet,
                "sheet": self.sheet(f.sheet).name,
                "label": f.label,
                "type": f.type,
                "cell": f.cell,
                "required": f.required,
                "min": f.min,
                "max": f.max,
                "method": f.method,
                "weight": f.weight,
                "is_total": bool(f.total_of),
                "order": i,
            }
            for i, f in enumerate(self.fields.values())
        ]
        return pd.DataFrame(rows).set_index("field")


def check_period(period: str) -> str:
    """Return `period` when it is YYYY-H1, YYYY-H2 or YYYY; raise DefinitionError otherwise."""
    if not _PERIOD.match(period or ""):
        raise DefinitionError(f"kỳ báo cáo không hợp lệ: {period!r} (dạng 2020-H1, 2020-H2 hoặc 2020)")
    return period


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise DefinitionError(f"{where}: {what}")


def _col(letter: str, where: str) -> int:
    try:
        return column_index_from_string(str(letter))
    except ValueError:
        raise DefinitionError(f"{where}: cột không hợp lệ {letter!r}") from None


def _field(spec: dict, where: str, sheet: str, row: int, col: int, choices: dict, **extra) -> Field:
    _need(isinstance(spec, dict), where, "phải là một bảng khóa-giá trị")
    known = {
        "id",
        "label",
        "type",
        "unit",
        "required",
        "min",
        "max",
        "choices",
        "role",
        "total_of",
        "consolidate",
        "lines",
        "group",
    }
    unknown = set(spec) - known
    _need(not unknown, where, f"khóa không biết: {sorted(unknown)}")
    fid = extra.pop("fid", spec.get("id"))
    _need(isinstance(fid, str) and bool(fid), where, "thiếu 'id'")
    _need(isinstance(spec.get("label"), str) and spec["label"].strip() != "", where, f"{fid}: thiếu 'label'")
    ftype = spec.get("type")
    _need(ftype in TYPES, where, f"{fid}: kiểu {ftype!r} không hợp lệ (một trong {sorted(TYPES)})")
    cons = spec.get("consolidate", "none")
    if isinstance(cons, str):
        cons = {"method": cons}
    _need(
        isinstance(cons, dict) and cons.get("method") in METHODS,
        where,
        f"{fid}: 'consolidate' phải là một trong {sorted(METHODS)}",
    )
    _need(
        cons["method"] != "weighted_mean" or bool(cons.get("weight")),
        where,
        f"{fid}: weighted_mean cần 'weight'",
    )
    _need(
        cons["method"] not in {"sum", "weighted_mean"} or ftype in NUMERIC,
        where,
        f"{fid}: chỉ cộng được trường số",
    )
    ch = spec.get("choices")
    if ftype == "choice":
        _need(ch in choices, where, f"{fid}: danh sách lựa chọn {ch!r} không có trong 'choices'")
    lo, hi = spec.get("min"), spec.get("max")
    if ftype == "percent":
        lo = 0 if lo is None else lo
        hi = 100 if hi is None else hi
    for name, v in (("min", lo), ("max", hi)):
        _need(v is None or isinstance(v, (int, float)), where, f"{fid}: '{name}' phải là số")
    role = spec.get("role", "")
    _need(role == "" or role in ROLES, where, f"{fid}: vai trò {role!r} không hợp lệ")
    tot = spec.get("total_of") or ()
    if isinstance(tot, str):
        tot = (tot,)
    return Field(
        id=fid,
        sheet=sheet,
        label=spec["label"].strip(),
        type=ftype,
        row=row,
        col=col,
        unit=str(spec.get("unit", "")),
        required=bool(spec.get("required", False)),
        min=lo,
        max=hi,
        choices=tuple(choices.get(ch, ())) if ftype == "choice" else (),
        role=role,
        total_of=tuple(tot),
        method=cons["method"],
        weight=cons.get("weight", ""),
        lines=_lines(spec.get("lines", 1), where, fid),
        **extra,
    )


def _lines(v: object, where: str, fid: str) -> int:
    _need(isinstance(v, int) and 1 <= v <= 50, where, f"{fid}: 'lines' phải là số nguyên từ 1 đến 50")
    return int(v)


def _expand(path: str | list, tables: dict[str, tuple[list[str], list[str]]], where: str,
            sheet: str | None) -> list[tuple[str, ...]]:
    """Expand a check path (or list of paths) to one tuple of field ids per instance. "*.col" stands for
    every non-total row of the table sheet that has column `col` (`sheet`, the check's own, when several
    have it), never for rows of other tables."""
    paths = [path] if isinstance(path, str) else list(path)
    wild = [p[2:] for p in paths if p.startswith("*.")]
    if not wild:
        return [tuple(paths)]
    have = [sid for sid, (_, cols) in tables.items() if all(c in cols for c in wild)]
    if sheet is not None:
        _need(sheet in have, where, f"trang bảng {sheet!r} không có cột {wild}")
        have = [sheet]
    _need(len(have) == 1, where,
          f"cột {wild} có ở {len(have)} trang bảng {have}: ghi rõ 'sheet:' của kiểm tra" if have
          else f"không trang bảng nào có cột {wild}")
    rows = tables[have[0]][0]
    return [tuple(p.replace("*.", f"{r}.", 1) for p in paths) for r in rows]


def _checks(specs: list, fields: dict[str, Field], tables: dict[str, tuple[list[str], list[str]]],
            rules: dict) -> tuple[Check, ...]:
    out: list[Check] = []
    for i, spec in enumerate(specs or []):
        where = f"checks[{i}]"
        _need(isinstance(spec, dict), where, "phải là một bảng khóa-giá trị")
        rule, kind = spec.get("rule"), spec.get("kind")
        _need(rule in rules, where, f"quy tắc {rule!r} chưa có trong 'rules'")
        _need(kind in CHECK_KINDS, where, f"loại kiểm tra {kind!r} không hợp lệ")
        main = spec.get("field") if kind == "required_if" else spec.get("left")
        other = spec.get("when") if kind == "required_if" else spec.get("right")
        _need(main is not None and other is not None, where, f"{rule}: thiếu trường cần so sánh")
        sheet = spec.get("sheet")
        lefts, rights = _expand(main, tables, where, sheet), _expand(other, tables, where, sheet)
        if len(rights) == 1 and len(lefts) > 1:
            rights = rights * len(lefts)
        if len(lefts) == 1 and len(rights) > 1:
            lefts = lefts * len(rights)
        _need(len(lefts) == len(rights), where, f"{rule}: hai vế của kiểm tra có số dòng khác nhau")
        op = spec.get("op", "le")
        _need(op in OPS, where, f"{rule}: phép so sánh {op!r} không hợp lệ")
        for left, right in zip(lefts, rights, strict=True):
            for fid in (*left, *right):
                _need(fid in fields, where, f"{rule}: trường {fid!r} không có trong định nghĩa")
                _need(fields[fid].numeric, where, f"{rule}: trường {fid!r} không phải trường số")
            at = spec.get("at", left[0])
            if "*." in at:
                at = left[0]
            _need(at in fields, where, f"{rule}: ô ghi lỗi {at!r} không có trong định nghĩa")
            out.append(
                Check(
                    rule=rule,
                    kind=kind,
                    left=left,
                    right=right,
                    op=op,
                    at=at,
                    blank_only=bool(spec.get("blank_only", False)),
                    min=spec.get("min"),
                    max=spec.get("max"),
                )
            )
    return tuple(out)


def _rules(raw: dict, where: str) -> dict[str, Rule]:
    out = {}
    for rid, spec in (raw or {}).items():
        _need(
            isinstance(rid, str) and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rid) is not None,
            where,
            f"mã quy tắc {rid!r} phải là chữ thường nối bằng gạch ngang",
        )
        _need(
            isinstance(spec, dict) and spec.get("severity") in SEVERITIES,
            where,
            f"{rid}: 'severity' phải là error hoặc warning",
        )
        _need(
            isinstance(spec.get("message"), str) and "." in spec["message"],
            where,
            f"{rid}: thiếu câu thông báo 'message'",
        )
        by = spec.get("suppressed_by", [])
        _need(isinstance(by, list) and all(isinstance(x, str) for x in by), where,
              f"{rid}: 'suppressed_by' phải là một danh sách mã quy tắc")
        unknown = set(spec) - {"severity", "message", "suppressed_by"}
        _need(not unknown, where, f"{rid}: khóa không biết {sorted(unknown)}")
        out[rid] = Rule(rid, spec["severity"], spec["message"].strip(), tuple(by))
    return out


_OFFICE_TEXTS = ("name", "short", "superior", "symbol", "subject")
_OFFICE_LISTS = ("recipients", "signature")


def _office(raw: object, where: str) -> Office:
    """The `office:` section: name and short are required, the rest optional."""
    _need(isinstance(raw, dict), where, "thiếu mục 'office' (tên cơ quan tổng hợp: name, short, ...)")
    unknown = set(raw) - set(_OFFICE_TEXTS) - set(_OFFICE_LISTS)
    _need(not unknown, where, f"khóa không biết: {sorted(unknown)}")
    for key in ("name", "short"):
        _need(isinstance(raw.get(key), str) and raw[key].strip() != "", f"{where}.{key}", "cần một tên")
    for key in _OFFICE_TEXTS:
        _need(isinstance(raw.get(key, ""), str), f"{where}.{key}", "phải là một chuỗi")
    for key in _OFFICE_LISTS:
        v = raw.get(key, [])
        _need(isinstance(v, list) and all(isinstance(x, str) for x in v), f"{where}.{key}",
              "phải là một danh sách chuỗi")
    return Office(**{k: raw.get(k, "").strip() for k in _OFFICE_TEXTS},
                  **{k: tuple(x.strip() for x in raw.get(k, [])) for k in _OFFICE_LISTS})


def _district(raw: object, where: str, fields: dict[str, Field], sheets: list[Sheet]) -> DistrictLayout:
    """The `district:` section (optional): figures per unit and charts, each naming fields that exist."""
    if raw is None:
        return DistrictLayout()
    _need(isinstance(raw, dict) and not set(raw) - {"by_unit", "charts"}, where,
          "chỉ có các khóa 'by_unit' và 'charts'")
    by_unit = []
    for i, item in enumerate(raw.get("by_unit") or []):
        w = f"{where}.by_unit[{i}]"
        _need(isinstance(item, dict) and item.get("field") in fields, w,
              "cần 'field' là một trường có trong định nghĩa")
        _need(fields[item["field"]].numeric, w, f"trường {item['field']!r} không phải trường số")
        by_unit.append((item["field"], str(item.get("header") or fields[item["field"]].label)))
    charts = []
    tables = {s.id: s for s in sheets if s.kind == "table"}
    for i, item in enumerate(raw.get("charts") or []):
        w = f"{where}.charts[{i}]"
        _need(isinstance(item, dict) and item.get("by") in ("unit", "row"), w, "cần 'by': unit hoặc row")
        _need(isinstance(item.get("title"), str) and item["title"] != "", w, "cần 'title'")
        if item["by"] == "unit":
            _need(item.get("field") in dict(by_unit), w, "'field' phải là một trường của 'by_unit'")
        else:
            table = tables.get(item.get("sheet"))
            _need(table is not None, w, "'sheet' phải là mã một trang bảng")
            _need(item.get("column") in [c[0] for c in table.columns], w,
                  "'column' phải là mã một cột của bảng")
        charts.append(Chart(item["by"], item["title"], str(item.get("axis", "")), str(item.get("field", "")),
                            str(item.get("sheet", "")), str(item.get("column", ""))))
    return DistrictLayout(tuple(by_unit), tuple(charts))


def load_rules(path: Path = GENERIC_RULES) -> dict[str, Rule]:
    """Read the generic rules registry (`schemas/rules.yaml`)."""
    return _rules(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)


def load_definition(path: Path | str = DEFAULT_DEFINITION) -> Definition:
    """Read, check and lay out a report definition. Raises DefinitionError naming the bad entry."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DefinitionError(f"{path}: không đọc được định nghĩa báo cáo: {exc}") from None
    return build_definition(raw, path)


_LAYOUT_KEYS = {
    "form": {"header_row": int, "first_row": int, "label_col": str, "value_col": str, "unit_col": str,
             "hint_col": str, "id_col": str},
    "table": {"header_row": int, "first_row": int, "number_col": str, "label_col": str,
              "first_value_col": str, "id_col": str},
}


def _check_shape(raw: dict, name: str) -> None:
    """The definition's top-level shape, before anything is laid out: each error names its key path."""
    _need(isinstance(raw, dict), name, "định nghĩa phải là một bảng khóa-giá trị")
    for key in ("id", "version", "title", "sheets", "layout", "periods", "office"):
        _need(key in raw, name, f"thiếu khóa '{key}'")
    _need(isinstance(raw["version"], int), f"{name}: version", "phải là một số nguyên (ví dụ 1)")
    periods = raw["periods"]
    _need(isinstance(periods, dict) and all(isinstance(periods.get(k), str) and "{year}" in periods[k]
                                            for k in ("H1", "H2", "year")),
          f"{name}: periods", "cần H1, H2 và year, mỗi mục là một câu có {year}")
    choices = raw.get("choices") or {}
    _need(isinstance(choices, dict) and all(isinstance(v, list) and v and all(isinstance(x, str) for x in v)
                                            for v in choices.values()),
          f"{name}: choices", "mỗi danh sách lựa chọn là một danh sách chuỗi")
    sheets, lay = raw["sheets"], raw["layout"]
    _need(isinstance(sheets, list) and sheets, f"{name}: sheets", "phải là một danh sách các trang")
    _need(isinstance(lay, dict), f"{name}: layout", "phải là một bảng khóa-giá trị")
    for k in ("title_row", "unit_row"):
        _need(isinstance(lay.get(k), int) and lay[k] >= 1, f"{name}: layout.{k}", "cần một số dòng từ 1")
    kinds = {"table" if isinstance(sh, dict) and "table" in sh else "form" for sh in sheets}
    for kind in sorted(kinds):
        part = lay.get(kind)
        _need(isinstance(part, dict), f"{name}: layout.{kind}",
              f"thiếu (có trang kiểu {kind}): cần {sorted(_LAYOUT_KEYS[kind])}")
        for key, typ in _LAYOUT_KEYS[kind].items():
            where = f"{name}: layout.{kind}.{key}"
            _need(isinstance(part.get(key), typ), where,
                  "cần một số dòng" if typ is int else "cần một chữ cái tên cột (ví dụ B)")
            if typ is str:
                _col(part[key], where)
    for si, sh in enumerate(sheets):
        where = f"{name}: sheets[{si}]"
        _need(isinstance(sh, dict), where, "phải là một bảng khóa-giá trị")
        if "table" in sh:
            t = sh["table"]
            _need(isinstance(t, dict), f"{where}.table", "phải là một bảng khóa-giá trị")
            for part in ("columns", "rows"):
                items = t.get(part)
                _need(isinstance(items, list) and items and all(isinstance(x, dict) for x in items),
                      f"{where}.table.{part}", "cần một danh sách, mỗi mục có id và label")
                for i, x in enumerate(items):
                    _need(isinstance(x.get("label"), str) and x["label"] != "", f"{where}.table.{part}[{i}]",
                          "thiếu 'label'")
        else:
            _need(isinstance(sh.get("fields"), list) and sh["fields"], f"{where}.fields",
                  "một trang cần 'fields' (trang biểu mẫu) hoặc 'table' (trang bảng)")


def build_definition(raw: dict, path: Path = DEFAULT_DEFINITION) -> Definition:
    """Check and lay out an already parsed definition (see load_definition). Raises DefinitionError naming
    the key path of the first problem and what is expected there."""
    try:
        return _build(raw, path)
    except DefinitionError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:  # a shape not foreseen above
        raise DefinitionError(f"{path.name}: định nghĩa không hợp lệ (khóa hoặc giá trị {exc}); "
                              "đối chiếu với schemas/tthtcd-6thang.yaml") from None


def _check_sheet_name(s: dict, where: str, seen: set[str]) -> None:
    """A sheet's id and name as Excel takes them: present, at most 31 characters, unique, allowed."""
    _need(isinstance(s, dict) and _ID.match(str(s.get("id", ""))) is not None, where, "thiếu 'id' hợp lệ")
    _need(
        bool(s.get("name")) and len(s["name"]) <= 31,
        f"{where} ({s['id']})",
        "tên trang thiếu hoặc dài quá 31 ký tự",
    )
    _need(s["name"] not in seen, where, f"tên trang {s['name']!r} bị trùng")
    _need(
        s["name"] not in RESERVED_SHEETS and not _BAD_SHEET_CHARS.search(s["name"]),
        where,
        f"tên trang {s['name']!r} trùng tên dành riêng hoặc có ký tự Excel không cho phép",
    )
    seen.add(s["name"])


def _table_sheet(s: dict, where: str, name: str, table: dict, choices: dict, fields: dict[str, Field],
                 tables: dict[str, tuple[list[str], list[str]]]) -> Sheet:
    """A table sheet: a field per (row, column), added to `fields`; its plain rows and columns to `tables`."""
    t = s["table"]
    cols, rows = t.get("columns") or [], t.get("rows") or []
    _need(bool(cols) and bool(rows), f"{where}.table", "bảng cần 'columns' và 'rows'")
    first_col = _col(table["first_value_col"], f"{name}: layout.table")
    ids: list[str] = []
    for ri, r in enumerate(rows):
        _need(
            _ID.match(str(r.get("id", ""))) is not None,
            f"{where}.table.rows[{ri}]",
            "thiếu 'id' hợp lệ",
        )
        for ci, c in enumerate(cols):
            cw = f"{where}.table.columns[{ci}]"
            _need(_ID.match(str(c.get("id", ""))) is not None, cw, "thiếu 'id' hợp lệ")
            fid = f"{r['id']}.{c['id']}"
            _need(fid not in fields, f"{where}.table", f"mã ô {fid!r} bị trùng")
            tot = r.get("total_of")
            if tot == "*":
                tot = [f"{o['id']}.{c['id']}" for o in rows if not o.get("total_of")]
            elif tot:
                tot = [f"{o}.{c['id']}" for o in tot]
            col_label = f"{c['group']}: {c['label']}" if c.get("group") else c.get("label", "")
            spec = {k: v for k, v in c.items() if k not in ("id", "group")} | {
                "total_of": tot or (),
                "label": f"{r.get('label', '')} – {col_label}",
            }
            fields[fid] = _field(spec, cw, s["id"], table["first_row"] + ri, first_col + ci, choices, fid=fid,
                                 table_row=r["id"], table_col=c["id"])
            ids.append(fid)
        if not r.get("total_of"):
            tables.setdefault(s["id"], ([], [c.get("id") for c in cols]))[0].append(r["id"])
    return Sheet(
        s["id"],
        s["name"],
        s.get("title", ""),
        "table",
        tuple(ids),
        rows=tuple((r["id"], r["label"]) for r in rows),
        columns=tuple((c["id"], c["label"], c.get("group", "")) for c in cols),
        number_label=t.get("number_label", "TT"),
        table_label=t.get("label", ""),
        signature=bool(s.get("signature")),
    )


def _form_sheet(s: dict, where: str, name: str, form: dict, choices: dict, fields: dict[str, Field]) -> Sheet:
    """A form sheet: a field per row, added to `fields`."""
    vcol = _col(form["value_col"], f"{name}: layout.form")
    ids: list[str] = []
    for fi, spec in enumerate(s.get("fields") or []):
        fw = f"{where}.fields[{fi}]"
        f = _field(spec, fw, s["id"], form["first_row"] + fi, vcol, choices)
        _need(_ID.match(f.id) is not None, fw, f"mã trường {f.id!r} không hợp lệ")
        _need(f.id not in fields, fw, f"mã trường {f.id!r} bị trùng")
        ids.append(f.id)
        fields[f.id] = f
    _need(bool(ids), where, "trang không có trường nào")
    return Sheet(s["id"], s["name"], s.get("title", ""), "form", tuple(ids),
                 signature=bool(s.get("signature")))


def _check_references(fields: dict[str, Field], name: str) -> None:
    """Totals' parts and weights name numeric fields that exist; each role is held by one field."""
    for f in fields.values():
        for part in f.total_of:
            _need(part in fields, f"{name}: {f.id}", f"total_of: trường {part!r} không tồn tại")
            _need(fields[part].numeric, f"{name}: {f.id}", f"total_of: trường {part!r} không phải trường số")
        _need(not f.weight or f.weight in fields, f"{name}: {f.id}", f"trọng số {f.weight!r} không tồn tại")
    for role in ROLES:
        n = sum(f.role == role for f in fields.values())
        _need(n == 1 or (n == 0 and role not in IDENTITY_ROLES), name, f"cần đúng một trường có role: {role}")
    _need(all(f.type == "date" for f in fields.values() if f.role == "report_date"), name,
          "trường có role: report_date phải có kiểu date")


def _all_rules(raw: dict, fields: dict[str, Field], name: str) -> tuple[dict, object]:
    """The registry of a report — schemas/rules.yaml, the report's own rules and its plausibility rules
    (every rule named in a `suppressed_by` must exist) — and its plausibility section."""
    rules = load_rules()
    own = _rules(raw.get("rules"), f"{name}: rules")
    dup = set(rules) & set(own)
    _need(not dup, f"{name}: rules", f"trùng mã với rules.yaml: {sorted(dup)}")
    rules |= own
    _need("total-mismatch" in rules, f"{name}: rules", "thiếu quy tắc 'total-mismatch'")
    plausibility, plausibility_rules = parse_plausibility(raw.get("plausibility"), fields, rules, name)
    rules |= plausibility_rules
    for rule in rules.values():
        missing = set(rule.suppressed_by) - set(rules)
        _need(not missing, f"{name}: rules.{rule.id}.suppressed_by", f"quy tắc không có: {sorted(missing)}")
    return rules, plausibility


def _build(raw: dict, path: Path) -> Definition:
    name = path.name
    _check_shape(raw, name)
    choices = {k: tuple(v) for k, v in (raw.get("choices") or {}).items()}
    lay = raw["layout"]
    fields: dict[str, Field] = {}
    sheets: list[Sheet] = []
    tables: dict[str, tuple[list[str], list[str]]] = {}  # table sheet → (its non-total rows, its columns)
    seen_sheets: set[str] = set()
    for si, s in enumerate(raw["sheets"]):
        where = f"{name}: sheets[{si}]"
        _check_sheet_name(s, where, seen_sheets)
        if "table" in s:
            sheets.append(_table_sheet(s, where, name, lay.get("table", {}), choices, fields, tables))
        else:
            sheets.append(_form_sheet(s, where, name, lay.get("form", {}), choices, fields))
    _check_references(fields, name)
    rules, plausibility = _all_rules(raw, fields, name)
    checks = _checks(raw.get("checks"), fields, tables, rules)
    return Definition(
        id=str(raw["id"]),
        version=int(raw["version"]),
        title=raw["title"],
        organisation=raw.get("organisation", ""),
        recipient=raw.get("recipient", ""),
        signature=tuple(raw.get("signature") or ()),
        periods=dict(raw["periods"]),
        choices=choices,
        instructions=tuple(raw.get("instructions") or ()),
        layout=lay,
        sheets=tuple(sheets),
        fields=fields,
        checks=checks,
        rules=rules,
        office=_office(raw.get("office"), f"{name}: office"),
        district=_district(raw.get("district"), f"{name}: district", fields, sheets),
        path=path,
        plausibility=plausibility,
        history=parse_history(raw.get("history"), fields, tables, name),
    )


# --- The plausibility section (`plausibility:` of the report YAML) ----------------------------------------
# Figures that are possible but unlikely: ratios between fields of one unit, the report date against the
# period, and each unit's figures against its peers. Every finding is a warning. pipeline.checks.plausibility
# (within a unit) and pipeline.checks.peers (among units) evaluate what is parsed here.

# Generic rules the plausibility code emits (messages in rules.yaml); a ratio may name its own rule.
RATIO_RULE = "ratio-implausible"
MAGNITUDE_RULES = {3: "magnitude-thousand", 6: "magnitude-million"}  # power of ten -> rule
PEER_RULES = {"high": "peer-high", "low": "peer-low", 3: "peer-magnitude-thousand",
              6: "peer-magnitude-million"}
DISTRICT_RULES = {"high": "district-peer-high", "low": "district-peer-low",
                  "ratio": "district-ratio-implausible"}


@dataclass(frozen=True, slots=True)
class Ratio:
    """One ratio instance (a `*.` path already expanded to one row): scale * sum(numerator) /
    (sum(denominator) / sum(per)) must lie in [min, max]. An empty denominator is 1 (a plain range)."""

    id: str  # the YAML entry's id; a row's instance keeps it (recall and tests group by it)
    rule: str
    measure: str  # Vietnamese name of the ratio, for messages ("số người bình quân một hộ")
    numerator: tuple[str, ...]
    denominator: tuple[str, ...] = ()
    per: tuple[str, ...] = ()
    scale: float = 1.0
    min: float | None = None
    max: float | None = None
    typical: float = 1.0  # the usual value: a magnitude diagnosis prefers the reading nearest to it
    at: str = ""  # the cell a finding goes to when nothing points at another one

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.numerator, *self.denominator, *self.per)


@dataclass(frozen=True, slots=True)
class DateWindow:
    """The date field must fall between `days_before_end` days before the period's last day and
    `days_after_end` days after it."""

    field: str
    rule: str
    days_before_end: int
    days_after_end: int


@dataclass(frozen=True, slots=True)
class PeerField:
    """A field compared among peers, as scale * field / sum(per) (or the field itself without `per`)."""

    field: str
    per: tuple[str, ...] = ()
    scale: float = 1.0
    measure: str = ""
    low: bool = False  # also flag figures far below the median (small counts vary too much for most fields)
    min_decades: float | None = None  # this field's own limits (default: the section's)
    max_decades: float | None = None


@dataclass(frozen=True, slots=True)
class Plausibility:
    ratios: tuple[Ratio, ...] = ()
    report_date: DateWindow | None = None
    peers: tuple[PeerField, ...] = ()
    min_peers: int = 8  # smaller groups are left to the ratios' bounds
    min_decades: float = 1.0  # a figure nearer its peers' median than 10**min_decades is never flagged
    max_decades: float = 1.5  # ... and one farther than 10**max_decades always is
    mad_factor: float = 5.0  # between the two: farther than mad_factor robust deviations (1.4826 MAD)
    magnitude_tolerance: float = 0.5  # a figure 10**(3 +- this) off is diagnosed as a x1000 slip


_PLAUS_KEYS = {"rules", "ratios", "report_date", "peers"}
_RATIO_KEYS = {"id", "rule", "measure", "numerator", "denominator", "per", "scale", "min", "max", "typical",
               "at", "why"}
_PEER_KEYS = {"min_peers", "min_decades", "max_decades", "mad_factor", "magnitude_tolerance", "fields"}


def _paths(spec: object, where: str) -> list[str]:
    paths = [spec] if isinstance(spec, str) else spec
    _need(isinstance(paths, list) and all(isinstance(p, str) and p for p in paths), where,
          "phải là mã trường hoặc danh sách mã trường")
    return paths


def _expand_rows(paths: list[str], fields: dict[str, Field], where: str) -> list[tuple[str, ...]]:
    """`*.col` paths -> one tuple per non-total row of the table holding column `col` (all wildcards of an
    entry must be columns of one table); plain ids -> one tuple."""
    cols = {p[2:] for p in paths if p.startswith("*.")}
    if not cols:
        return [tuple(paths)]
    rows = None
    for col in cols:
        found = [f.table_row for f in fields.values() if f.table_col == col and not f.total_of]
        _need(bool(found), where, f"không có cột bảng {col!r}")
        rows = found if rows is None else [r for r in rows if r in found]
    return [tuple(p.replace("*.", f"{r}.", 1) for p in paths) for r in rows or []]


def _numeric_ids(ids: tuple[str, ...], fields: dict[str, Field], where: str) -> None:
    for fid in ids:
        _need(fid in fields, where, f"trường {fid!r} không có trong định nghĩa")
        _need(fields[fid].numeric, where, f"trường {fid!r} không phải trường số")


def _number(spec: dict, key: str, where: str, default: float | None = None) -> float | None:
    v = spec.get(key, default)
    number = isinstance(v, (int, float)) and not isinstance(v, bool)
    _need(v is None or number, where, f"'{key}' phải là số")
    return None if v is None else float(v)


def _ratios(specs: object, fields: dict[str, Field], rules: dict, where: str) -> tuple[Ratio, ...]:
    _need(isinstance(specs, list), where, "phải là một danh sách")
    out: list[Ratio] = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        w = f"{where}[{i}]"
        _need(isinstance(spec, dict), w, "phải là một bảng khóa-giá trị")
        unknown = set(spec) - _RATIO_KEYS
        _need(not unknown, w, f"khóa không biết: {sorted(unknown)}")
        rid = spec.get("id")
        good = isinstance(rid, str) and _ID.match(rid) is not None and rid not in seen
        _need(good, w, "thiếu 'id' hợp lệ, không trùng")
        seen.add(rid)
        w = f"{where}[{i}] ({rid})"
        rule = spec.get("rule", RATIO_RULE)
        _need(rule in rules, w, f"quy tắc {rule!r} chưa có trong 'rules'")
        _need(isinstance(spec.get("measure"), str) and spec["measure"].strip() != "", w, "thiếu 'measure'")
        _need(isinstance(spec.get("why"), str) and spec["why"].strip() != "", w,
              "thiếu 'why' (nguồn hoặc lý do của khoảng hợp lý)")
        lo, hi = _number(spec, "min", w), _number(spec, "max", w)
        _need(lo is not None or hi is not None, w, "cần 'min' hoặc 'max'")
        _need(lo is None or hi is None or 0 < lo < hi, w, "cần 0 < min < max")
        scale = _number(spec, "scale", w, 1.0)
        _need(scale is not None and scale > 0, w, "'scale' phải dương")
        typical = _number(spec, "typical", w)
        if typical is None:  # one-sided ranges say their usual value; two-sided ones default to the middle
            _need(lo is not None and hi is not None, w,
                  "khoảng chỉ có một đầu cần 'typical' (giá trị thường gặp)")
            typical = (lo * hi) ** 0.5
        _need(typical > 0 and (lo is None or typical >= lo) and (hi is None or typical <= hi), w,
              "'typical' phải nằm trong khoảng hợp lý")
        _need("numerator" in spec, w, "thiếu 'numerator'")
        _need("per" not in spec or "denominator" in spec, w, "'per' cần 'denominator'")
        parts = {k: _paths(spec[k], f"{w}.{k}") for k in ("numerator", "denominator", "per") if k in spec}
        flat = [(k, p) for k, ps in parts.items() for p in ps]
        expanded = _expand_rows([p for _, p in flat], fields, w)
        for inst in expanded:
            got = {k: tuple(x for (kk, _), x in zip(flat, inst, strict=True) if kk == k) for k in parts}
            ids = (*got["numerator"], *got.get("denominator", ()), *got.get("per", ()))
            _numeric_ids(ids, fields, w)
            at = spec.get("at", got["numerator"][0])
            if isinstance(at, str) and at.startswith("*."):
                at = next((x for x in ids if x.endswith(at[1:])), at)
            _need(at in ids, w, f"ô ghi cảnh báo {at!r} phải là một trường của tỷ lệ")
            out.append(Ratio(id=rid, rule=rule, measure=spec["measure"].strip(), numerator=got["numerator"],
                             denominator=got.get("denominator", ()), per=got.get("per", ()), scale=scale,
                             min=lo, max=hi, typical=typical, at=at))
    return tuple(out)


def _date_window(spec: object, fields: dict[str, Field], rules: dict, where: str) -> DateWindow:
    _need(isinstance(spec, dict), where, "phải là một bảng khóa-giá trị")
    unknown = set(spec) - {"field", "rule", "days_before_end", "days_after_end", "why"}
    _need(not unknown, where, f"khóa không biết: {sorted(unknown)}")
    fid = spec.get("field")
    _need(fid in fields and fields[fid].type == "date", where, f"'field' {fid!r} phải là một trường ngày")
    rule = spec.get("rule", "report-date-outside-period")
    _need(rule in rules, where, f"quy tắc {rule!r} chưa có trong 'rules'")
    days = [spec.get(k) for k in ("days_before_end", "days_after_end")]
    _need(all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in days), where,
          "'days_before_end' và 'days_after_end' phải là số ngày (số nguyên ≥ 0)")
    return DateWindow(fid, rule, days[0], days[1])


def _peers(spec: object, fields: dict[str, Field], where: str) -> dict:
    _need(isinstance(spec, dict), where, "phải là một bảng khóa-giá trị")
    unknown = set(spec) - _PEER_KEYS
    _need(not unknown, where, f"khóa không biết: {sorted(unknown)}")
    out: dict = {}
    for key in ("min_decades", "max_decades", "mad_factor", "magnitude_tolerance"):
        if key in spec:
            v = _number(spec, key, where)
            _need(v is not None and v > 0, where, f"'{key}' phải dương")
            out[key] = v
    if "min_peers" in spec:
        _need(isinstance(spec["min_peers"], int) and spec["min_peers"] >= 3, where, "'min_peers' phải ≥ 3")
        out["min_peers"] = spec["min_peers"]
    lo, hi = out.get("min_decades", 1.0), out.get("max_decades", 1.5)
    _need(lo <= hi, where, "cần min_decades ≤ max_decades")
    peer_fields = []
    for i, f in enumerate(spec.get("fields") or []):
        w = f"{where}.fields[{i}]"
        keys = {"field", "per", "scale", "measure", "low", "min_decades", "max_decades"}
        _need(isinstance(f, dict) and not set(f) - keys, w,
              f"cần 'field' và có thể có {sorted(keys - {'field'})}")
        _need(isinstance(f.get("low", False), bool), w, "'low' phải là true hoặc false")
        per = tuple(_paths(f["per"], f"{w}.per")) if "per" in f else ()
        _numeric_ids((f.get("field", ""), *per), fields, w)
        _need(isinstance(f.get("measure"), str) and f["measure"].strip() != "", w, "thiếu 'measure'")
        scale = _number(f, "scale", w, 1.0)
        _need(scale is not None and scale > 0, w, "'scale' phải dương")
        own = {k: _number(f, k, w) for k in ("min_decades", "max_decades") if k in f}
        _need(all(v is not None and v > 0 for v in own.values()), w,
              "'min_decades', 'max_decades' phải dương")
        _need(own.get("min_decades", lo) <= own.get("max_decades", hi), w, "cần min_decades ≤ max_decades")
        peer_fields.append(PeerField(f["field"], per, scale, f["measure"].strip(), f.get("low", False),
                                     **own))
    out["peers"] = tuple(peer_fields)
    return out


def parse_plausibility(raw: object, fields: dict[str, Field], rules: dict[str, Rule],
                       name: str) -> tuple[Plausibility, dict[str, Rule]]:
    """Check the report's `plausibility:` section; returns (Plausibility, the rules it defines). `rules` is
    the registry so far (generic + the report's own): the section's rules must not repeat an id."""
    if raw is None:
        return Plausibility(), {}
    where = f"{name}: plausibility"
    _need(isinstance(raw, dict), where, "phải là một bảng khóa-giá trị")
    unknown = set(raw) - _PLAUS_KEYS
    _need(not unknown, where, f"khóa không biết: {sorted(unknown)}")
    own = _rules(raw.get("rules"), f"{where}.rules")
    dup = set(rules) & set(own)
    _need(not dup, f"{where}.rules", f"trùng mã quy tắc đã có: {sorted(dup)}")
    every = rules | own
    used = [RATIO_RULE, *MAGNITUDE_RULES.values(), *PEER_RULES.values(), *DISTRICT_RULES.values()]
    missing = [r for r in used if r not in every]
    _need(not missing, where, f"thiếu quy tắc {missing} trong rules.yaml")
    ratios = _ratios(raw.get("ratios") or [], fields, every, f"{where}.ratios")
    window = None
    if "report_date" in raw:
        window = _date_window(raw["report_date"], fields, every, f"{where}.report_date")
    peers = _peers(raw["peers"], fields, f"{where}.peers") if "peers" in raw else {}
    return Plausibility(ratios=ratios, report_date=window, **peers), own


# --- the `history` section: comparison with earlier periods -----------------------------------------------

HISTORY_KEYS = {"compare_with", "changes"}
CHANGE_KEYS = {"fields", "rise", "fall", "min_previous", "why"}


def parse_history(raw: object, fields: dict[str, Field], tables: dict, name: str) -> History:
    """The definition's optional `history` section (see schemas/tthtcd-6thang.yaml): `compare_with`, a
    list of "previous" / "same_last_year", and `changes`, a list of {fields, rise, fall, min_previous,
    why} where fields are numeric paths as in `checks` ("*.participants": every activity row). A field
    listed twice keeps its last limits. Raises DefinitionError naming the bad entry."""
    where = f"{name}: history"
    if raw is None:
        return History()
    _need(isinstance(raw, dict), where, "phải là một bảng khóa-giá trị")
    _need(not set(raw) - HISTORY_KEYS, where, f"khóa không biết: {sorted(set(raw) - HISTORY_KEYS)}")
    kinds = raw.get("compare_with", ["previous", "same_last_year"])
    _need(isinstance(kinds, list) and bool(kinds) and all(k in ("previous", "same_last_year") for k in kinds)
          and len(set(kinds)) == len(kinds), f"{where}.compare_with",
          "phải là danh sách gồm previous và/hoặc same_last_year")
    limits: dict[str, ChangeLimit] = {}
    for i, spec in enumerate(raw.get("changes") or []):
        w = f"{where}.changes[{i}]"
        _need(isinstance(spec, dict), w, "phải là một bảng khóa-giá trị")
        _need(not set(spec) - CHANGE_KEYS, w, f"khóa không biết: {sorted(set(spec) - CHANGE_KEYS)}")
        paths = spec.get("fields")
        _need(isinstance(paths, list) and bool(paths), w, "cần 'fields': danh sách trường")
        bounds = {k: spec.get(k) for k in ("rise", "fall", "min_previous")}
        for k, v in bounds.items():
            _need(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0), w,
                  f"'{k}' phải là số không âm")
        _need(bounds["rise"] is not None or bounds["fall"] is not None, w, "cần 'rise' hoặc 'fall'")
        _need(bounds["fall"] is None or bounds["fall"] < 100, w, "'fall' phải nhỏ hơn 100 (%)")
        for path in paths:
            _need(isinstance(path, str), w, f"trường {path!r} không hợp lệ")
            for (fid,) in _expand(path, tables, w, None):
                _need(fid in fields, w, f"trường {fid!r} không có trong định nghĩa")
                _need(fields[fid].numeric, w, f"trường {fid!r} không phải trường số")
                limits[fid] = ChangeLimit(fid, bounds["rise"], bounds["fall"],
                                          float(bounds["min_previous"] or 0))
    return History(tuple(kinds), tuple(limits.values()))
