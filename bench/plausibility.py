#!/usr/bin/env python
"""Recall and false alarms of the plausibility rules on generated units, without writing workbooks.

    python bench/plausibility.py --n 10000 --seed report [--rate 0.25] [--out bench/plausibility.json]

The units and figures are bench.py's (`make_units`, `plan_submissions` with bench/figures.py), under a
seed of their own: tune the YAML's bounds on one seed, report on another. Instead of writing and reading
10,000 workbooks, each unit's figures go straight into the frame of raw cells the reader would return
(numbers as numbers, text as text, dates as datetimes, the percent flag of a "92%" cell), which is then
validated by `pipeline.checks.validate.validate` (ratios, magnitudes, the report date) and judged
among peers by `pipeline.checks.peers.add_peer_findings`, as `tonghop consolidate` does. A unit has at
most one slip; `--rate` of them get a plausibility slip of figures.SLIP_KINDS, about 6 % one of
bench.py's other slips.

With --findings, the findings.csv of a real run on bench.py's inbox (workbooks written and read) is
scored instead: the same units and slips, for checking that the shortcut measures what the job does.

Reported: per slip kind, the share caught by the new rules on the slipped cell (for a table row: the
row's cells or the column's total), anywhere in the unit, and, for x1000 and x1000000, the share whose
suggestion is the figure before the slip; false warnings of the new rules per 100 clean units (no slip
at all), per rule and together; and the validate stage with and without the within-unit rules.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

import bench as gen  # noqa: E402  (bench/bench.py: units and submissions)
from pipeline import findings as findings_mod  # noqa: E402
from pipeline.checks import plausibility as plaus_mod  # noqa: E402
from pipeline.checks import validate as validate_mod  # noqa: E402
from pipeline.checks.peers import add_peer_findings  # noqa: E402
from pipeline.checks.validate import CELL_COLUMNS, validate  # noqa: E402
from pipeline.definition import MAGNITUDE_RULES, PEER_RULES, load_definition  # noqa: E402
from pipeline.findings import make_findings  # noqa: E402

UNIT_COLUMNS = ["unit_code", "unit_name", "district_code", "district_name", "province_code", "province_name"]
if "suggestion" not in findings_mod.ALL_COLUMNS:  # until the findings frame carries it (issue 12)
    findings_mod.ALL_COLUMNS.append("suggestion")


def new_rules(definition) -> set[str]:
    """The rules of issue 16: ratios, magnitudes, the report date, peers."""
    p = definition.plausibility
    rules = {r.rule for r in p.ratios} | set(MAGNITUDE_RULES.values()) | set(PEER_RULES.values())
    return rules | ({p.report_date.rule} if p.report_date else set())


def cells_of(definition, tasks: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw cells a reader would return for each task, and the submissions frame (chosen, unit)."""
    fields = list(definition.fields.values())
    roles = {definition.role(r).id: r for r in ("unit_code", "unit_name", "period")}
    rows, subs = [], []
    for i, t in enumerate(tasks):
        u = t["unit"]
        given = {**t["values"], **t["edits"]}
        role = {"unit_code": u["unit_code"], "unit_name": u["full_name"], "period": gen.PERIOD}
        pct = set(t["percent"])
        for f in fields:
            raw = role[roles[f.id]] if f.id in roles else given.get(f.id)
            rows.append((i, f.id, raw, f.cell, f.id in pct, ""))  # no formula: totals count as typed
        subs.append(
            {
                "submission": i,
                "file": t["name"],
                **{c: u[c] for c in UNIT_COLUMNS},
                "chosen": True,
                "unit_name": u["full_name"],
                "full_name": u["full_name"],
            }
        )
    return pd.DataFrame(rows, columns=CELL_COLUMNS), pd.DataFrame(subs).set_index("submission")


def run(definition, tasks: list[dict], units: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Validate and judge among peers as the job does; (rendered findings, seconds per step)."""
    cells, subs = cells_of(definition, tasks)
    t0 = time.perf_counter()
    values, found = validate(definition, cells)
    t1 = time.perf_counter()
    found = found.join(subs[[*UNIT_COLUMNS, "file"]], on="submission")
    found["label"] = found["field"].map(definition.frame["label"])
    found["sheet"] = found["field"].map(definition.frame["sheet"])
    findings = make_findings(found, definition.rules)
    t2 = time.perf_counter()
    findings = add_peer_findings(definition, subs, values, findings, units)
    t3 = time.perf_counter()
    return findings, {"validate": t1 - t0, "render": t2 - t1, "peers": t3 - t2}


def validate_seconds(definition, tasks: list[dict], repeat: int) -> dict[str, float]:
    """The validate stage with and without the within-unit plausibility rules, alternating: medians of
    the wall time and of the CPU time of this process (validate runs in one thread; the CPU time is what
    other work on a shared machine disturbs least), and of the rules alone."""
    cells, _ = cells_of(definition, tasks)
    real = validate_mod.plausibility_findings
    off = lambda *a, **k: pd.DataFrame(columns=plaus_mod.RECORD_KEYS)  # noqa: E731
    times: dict[str, list[float]] = defaultdict(list)

    def timed(*a):
        t0, c0 = time.perf_counter(), time.process_time()
        out = real(*a)
        times["rules_alone"].append(time.perf_counter() - t0)
        times["rules_alone_cpu"].append(time.process_time() - c0)
        return out

    try:
        for _ in range(repeat):
            for mode in ("without", "with"):
                validate_mod.plausibility_findings = timed if mode == "with" else off
                t0, c0 = time.perf_counter(), time.process_time()
                validate(definition, cells)
                times[mode].append(time.perf_counter() - t0)
                times[f"{mode}_cpu"].append(time.process_time() - c0)
    finally:
        validate_mod.plausibility_findings = real
    return {k: round(statistics.median(v), 3) for k, v in times.items()}


def _related(field: str, slipped: str, definition) -> bool:
    """A finding on `field` points at the slip on `slipped`: the same cell, its row, or its column's total."""
    if field == slipped:
        return True
    f, s = definition.fields.get(field), definition.fields.get(slipped)
    if f is None or s is None or not s.table_row:
        return False
    return f.table_row == s.table_row or (f.table_col == s.table_col and bool(f.total_of))


def score(definition, tasks: list[dict], findings: pd.DataFrame) -> dict:
    """Recall per slip kind and false warnings per 100 clean units, from the tasks' labels."""
    rules = new_rules(definition)
    mine = findings[findings["rule"].isin(rules)]
    by_unit: dict[str, list[dict]] = defaultdict(list)
    for r in mine[["unit_code", "field", "rule", "value", "suggestion"]].to_dict("records"):
        by_unit[r["unit_code"]].append(r)
    any_rule: dict[str, set] = defaultdict(set)
    for code, field in zip(findings["unit_code"], findings["field"], strict=True):
        any_rule[code].add(field)
    clean = [t for t in tasks if not t["slip"]]
    false_by_rule = Counter(r["rule"] for t in clean for r in by_unit.get(t["unit_code"], []))
    false_by_field = Counter(
        f"{r['rule']} {r['field']}" for t in clean for r in by_unit.get(t["unit_code"], [])
    )
    clean_codes = {t["unit_code"] for t in clean}
    others = findings[findings["unit_code"].isin(clean_codes) & ~findings["rule"].isin(rules)]
    units_with_false = sum(bool(by_unit.get(t["unit_code"])) for t in clean)
    other = [t for t in tasks if t["slip"] and not t.get("label")]
    false_other = Counter(r["rule"] for t in other for r in by_unit.get(t["unit_code"], []))
    kinds: dict[str, Counter] = defaultdict(Counter)
    stray = Counter()
    for t in tasks:
        label = t.get("label")
        if not label:
            continue
        k = kinds[label["kind"]]
        k["n"] += 1
        got = by_unit.get(t["unit_code"], [])
        hit = [r for r in got if _related(r["field"], label["field"], definition)]
        k["cell"] += bool(hit)
        k["unit"] += bool(got)
        k["any_rule_cell"] += bool(hit) or label["field"] in any_rule.get(t["unit_code"], set())
        stray.update(r["rule"] for r in got if r not in hit)
        if label["factor"] in (1000, 1_000_000):
            orig = _number(t["values"][label["field"]]) / label["factor"]
            k["right_suggestion"] += any(
                r["field"] == label["field"] and _same(r["suggestion"], orig) for r in hit
            )
        elif label["factor"] in (10, 100):
            k["wrong_suggestion"] += any(_number(r["suggestion"]) == _number(r["suggestion"]) for r in hit)
    n_clean = len(clean)
    return {
        "units": len(tasks),
        "clean_units": n_clean,
        "units_with_other_slips": len(other),
        "plausibility_slips": sum(k["n"] for k in kinds.values()),
        "false_per_100_clean": round(100 * sum(false_by_rule.values()) / max(n_clean, 1), 3),
        "clean_units_with_a_false_warning_pct": round(100 * units_with_false / max(n_clean, 1), 3),
        "false_per_100_clean_by_rule": {
            r: round(100 * n / max(n_clean, 1), 3) for r, n in false_by_rule.most_common()
        },
        "false_per_100_clean_by_rule_and_field": {
            k: round(100 * n / max(n_clean, 1), 3) for k, n in false_by_field.most_common()
        },
        "other_findings_on_clean_units": dict(Counter(others["rule"]).most_common()),
        "new_rule_findings_on_units_with_other_slips": dict(false_other.most_common()),
        "new_rule_findings_elsewhere_on_slipped_units": dict(stray.most_common()),
        "kinds": {kind: dict(k) for kind, k in sorted(kinds.items())},
    }


def _number(v: object) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _same(a: object, b: float) -> bool:
    a = _number(a)
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def table(s: dict) -> str:
    """Markdown: recall per kind (grouped by field and factor), then false alarms."""
    lines = [
        "| slip | units | new rules, on the cell | new rules, in the unit | any rule, on the cell "
        "| suggestion right (x1000, x10^6) or wrong (x10, x100) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, k in s["kinds"].items():
        n = k.get("n", 0)
        sugg = (
            f"{100 * k.get('right_suggestion', 0) / n:.0f} %"
            if kind.startswith(("x1000:", "x1000000:"))
            else f"{100 * k.get('wrong_suggestion', 0) / n:.0f} %"
            if kind.startswith("x")
            else ""
        )
        lines.append(
            f"| {kind} | {n} | {100 * k.get('cell', 0) / n:.1f} % | {100 * k.get('unit', 0) / n:.1f} % "
            f"| {100 * k.get('any_rule_cell', 0) / n:.1f} % | {sugg} |"
        )
    by_factor: dict[str, Counter] = defaultdict(Counter)
    for kind, k in s["kinds"].items():
        group = kind.split(":")[0] if kind.startswith("x") else kind
        by_factor[group].update(k)
    lines += [
        "",
        "| slip | units | new rules, on the cell | new rules, in the unit | any rule, on the cell |",
        "|---|---:|---:|---:|---:|",
    ]
    for group, k in by_factor.items():
        n = k["n"]
        lines.append(
            f"| {group} | {n} | {100 * k['cell'] / n:.1f} % | {100 * k['unit'] / n:.1f} % "
            f"| {100 * k['any_rule_cell'] / n:.1f} % |"
        )
    lines += [
        "",
        f"clean units: {s['clean_units']}; false warnings of the new rules per 100 clean units: "
        f"{s['false_per_100_clean']} (units with one: {s['clean_units_with_a_false_warning_pct']} %)",
    ]
    lines += [f"  {rule}: {n}" for rule, n in s["false_per_100_clean_by_rule"].items()]
    lines += [f"    {key}: {n}" for key, n in s["false_per_100_clean_by_rule_and_field"].items()]
    lines += [f"other rules' findings on clean units: {s['other_findings_on_clean_units'] or 'none'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10000, help="units (default 10000)")
    p.add_argument(
        "--seed", default="report", help="seed of figures and slips (tune on one, report on another)"
    )
    p.add_argument("--rate", type=float, default=0.25, help="share of units with a plausibility slip")
    p.add_argument("--repeat", type=int, default=0, help="also time validate with/without the rules, R times")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    p.add_argument(
        "--findings",
        type=Path,
        default=None,
        help="score this findings.csv of a real `tonghop consolidate` run of bench.py's inbox instead "
        "(its units and slips: --seed '' --rate 0.06, bench.py's own)",
    )
    args = p.parse_args(argv)
    definition = load_definition()
    units = gen.make_units(args.n)
    tasks = [
        t
        for t in gen.plan_submissions(units, seed=args.seed, plausibility_rate=args.rate)
        if "-lan-1" not in t["name"]
    ]  # of a resubmission, the corrected file (the one chosen)
    if args.findings:
        findings = pd.read_csv(args.findings, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        findings["suggestion"] = pd.to_numeric(
            findings.get("suggestion", pd.Series(dtype=str)), errors="coerce"
        )
        seconds = {}
    else:
        findings, seconds = run(definition, tasks, pd.DataFrame(units))
    result = score(definition, tasks, findings) | {"seed": args.seed, "seconds": seconds}
    if args.repeat:
        result["validate_seconds"] = validate_seconds(definition, tasks, args.repeat)
    print(table(result))
    print(
        f"\nseconds: {seconds}"
        + (f"; validate with/without the rules: {result['validate_seconds']}" if args.repeat else "")
    )
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
