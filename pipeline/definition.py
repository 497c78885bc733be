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
RESERVED_SHEETS = {META_SHEET, "Hướng dẫn", "Góp ý"}  # written by the renderer around the report's sheets
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")
TYPES = {"integer", "decimal", "percent", "text", "date", "choice"}
NUMERIC = {"integer", "decimal", "percent"}
METHODS = {"sum", "weighted_mean", "count", "none"}
SEVERITIES = {"error", "warning"}
CHECK_KINDS = {"compare", "required_if", "ratio_between"}
OPS = {"le", "eq", "ge"}
ROLES = {"unit_code", "unit_name", "period"}
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
class Rule:
    id: str
    severity: str
    message: str


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
    path: Path = field(default=DEFAULT_DEFINITION)
    history: History = field(default_factory=lambda: History())

    def sheet(self, sheet_id: str) -> Sheet:
        return next(s for s in self.sheets if s.id == sheet_id)

    def role(self, role: str) -> Field:
        return next(f for f in self.fields.values() if f.role == role)

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

    def expected_sum(self, total_id: str) -> tuple[str, ...]:
        return self.fields[total_id].total_of


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


def _expand(path: str | list, table_rows: list[str], where: str) -> list[tuple[str, ...]]:
    """Expand a check path (or list of paths) to one tuple of field ids per instance."""
    paths = [path] if isinstance(path, str) else list(path)
    if any(p.startswith("*.") for p in paths):
        return [tuple(p.replace("*.", f"{r}.", 1) for p in paths) for r in table_rows]
    return [tuple(paths)]


def _checks(specs: list, fields: dict[str, Field], table_rows: list[str], rules: dict) -> tuple[Check, ...]:
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
        lefts, rights = _expand(main, table_rows, where), _expand(other, table_rows, where)
        if len(rights) == 1 and len(lefts) > 1:
            rights = rights * len(lefts)
        if len(lefts) == 1 and len(rights) > 1:
            lefts = lefts * len(rights)
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
        out[rid] = Rule(rid, spec["severity"], spec["message"].strip())
    return out


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


def build_definition(raw: dict, path: Path = DEFAULT_DEFINITION) -> Definition:
    """Check and lay out an already parsed definition (see load_definition)."""
    name = path.name
    _need(isinstance(raw, dict), name, "định nghĩa phải là một bảng khóa-giá trị")
    for key in ("id", "version", "title", "sheets", "layout", "periods"):
        _need(key in raw, name, f"thiếu khóa '{key}'")
    choices = {k: tuple(v) for k, v in (raw.get("choices") or {}).items()}
    lay = raw["layout"]
    form, table = lay.get("form", {}), lay.get("table", {})
    fields: dict[str, Field] = {}
    sheets: list[Sheet] = []
    table_rows: list[str] = []
    seen_sheets: set[str] = set()
    for si, s in enumerate(raw["sheets"]):
        where = f"{name}: sheets[{si}]"
        _need(isinstance(s, dict) and _ID.match(str(s.get("id", ""))) is not None, where, "thiếu 'id' hợp lệ")
        _need(
            bool(s.get("name")) and len(s["name"]) <= 31,
            f"{where} ({s['id']})",
            "tên trang thiếu hoặc dài quá 31 ký tự",
        )
        _need(s["name"] not in seen_sheets, where, f"tên trang {s['name']!r} bị trùng")
        _need(
            s["name"] not in RESERVED_SHEETS and not _BAD_SHEET_CHARS.search(s["name"]),
            where,
            f"tên trang {s['name']!r} trùng tên dành riêng hoặc có ký tự Excel không cho phép",
        )
        seen_sheets.add(s["name"])
        ids: list[str] = []
        if "table" in s:
            t = s["table"]
            cols, rows = t.get("columns") or [], t.get("rows") or []
            _need(bool(cols) and bool(rows), f"{where}.table", "bảng cần 'columns' và 'rows'")
            first_col = _col(table["first_value_col"], f"{name}: layout.table")
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
                    f = _field(
                        spec,
                        cw,
                        s["id"],
                        table["first_row"] + ri,
                        first_col + ci,
                        choices,
                        fid=fid,
                        table_row=r["id"],
                        table_col=c["id"],
                    )
                    ids.append(fid)
                    fields[fid] = f
                if not r.get("total_of"):
                    table_rows.append(r["id"])
            sheets.append(
                Sheet(
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
            )
        else:
            vcol = _col(form["value_col"], f"{name}: layout.form")
            for fi, spec in enumerate(s.get("fields") or []):
                fw = f"{where}.fields[{fi}]"
                f = _field(spec, fw, s["id"], form["first_row"] + fi, vcol, choices)
                _need(_ID.match(f.id) is not None, fw, f"mã trường {f.id!r} không hợp lệ")
                _need(f.id not in fields, fw, f"mã trường {f.id!r} bị trùng")
                ids.append(f.id)
                fields[f.id] = f
            _need(bool(ids), where, "trang không có trường nào")
            sheets.append(
                Sheet(
                    s["id"],
                    s["name"],
                    s.get("title", ""),
                    "form",
                    tuple(ids),
                    signature=bool(s.get("signature")),
                )
            )
    for f in fields.values():
        for part in f.total_of:
            _need(part in fields, f"{name}: {f.id}", f"total_of: trường {part!r} không tồn tại")
            _need(fields[part].numeric, f"{name}: {f.id}", f"total_of: trường {part!r} không phải trường số")
        _need(not f.weight or f.weight in fields, f"{name}: {f.id}", f"trọng số {f.weight!r} không tồn tại")
    for role in ROLES:
        _need(sum(f.role == role for f in fields.values()) == 1, name, f"cần đúng một trường có role: {role}")
    rules = load_rules()
    own = _rules(raw.get("rules"), f"{name}: rules")
    dup = set(rules) & set(own)
    _need(not dup, f"{name}: rules", f"trùng mã với rules.yaml: {sorted(dup)}")
    rules |= own
    _need("total-mismatch" in rules, f"{name}: rules", "thiếu quy tắc 'total-mismatch'")
    checks = _checks(raw.get("checks"), fields, table_rows, rules)
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
        path=path,
        history=parse_history(raw.get("history"), fields, table_rows, name),
    )


# --- the `history` section: comparison with earlier periods -----------------------------------------------

HISTORY_KEYS = {"compare_with", "changes"}
CHANGE_KEYS = {"fields", "rise", "fall", "min_previous", "why"}


def parse_history(raw: object, fields: dict[str, Field], table_rows: list[str], name: str) -> History:
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
            for (fid,) in _expand(path, table_rows, w):
                _need(fid in fields, w, f"trường {fid!r} không có trong định nghĩa")
                _need(fields[fid].numeric, w, f"trường {fid!r} không phải trường số")
                limits[fid] = ChangeLimit(fid, bounds["rise"], bounds["fall"],
                                          float(bounds["min_previous"] or 0))
    return History(tuple(kinds), tuple(limits.values()))
