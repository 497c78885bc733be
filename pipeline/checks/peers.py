"""Plausibility among peers: each unit's figures against the other units of its district or province.

`peer_findings(definition, figures, groups)` compares, for every field of the definition's
`plausibility.peers`, each unit's figure (normalised by another field, e.g. per 1,000 inhabitants) with the
median of its group, on a log scale: far is farther than max(min_decades, mad_factor x 1.4826 MAD) decades
(and always beyond max_decades). The first level of `groups` with at least `min_peers` figures is used
(the district, else the province); smaller groups are left to the ratios' bounds. A figure about 10**3
or 10**6 above the median is diagnosed as a magnitude slip with the figure divided as `suggestion`.
Only robust statistics (median, MAD); pandas groupby over all units and fields at once.

`add_peer_findings(definition, submissions, values, findings)` is the job's step: it takes the chosen
submissions of the run's period, leaves out figures that have a finding already (and the figures
normalised by them), and returns `findings` with the peer findings added.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.checks.plausibility import round_figure
from pipeline.definition import PEER_RULES, Definition, Plausibility
from pipeline.findings import make_findings

# The groups a unit is compared with, most alike first: its district's units of its own type (xã, phường,
# thị trấn), its province's units of its type, all units of its type (a city ward differs from a commune
# more than two provinces' communes do), its district, its province (for a units list without types).
# Keys and names are columns of the frame `unit_groups` builds.
UNIT_LEVELS = (
    ("g_dt", "g_dt_name"),
    ("g_pt", "g_pt_name"),
    ("g_t", "g_t_name"),
    ("g_d", "g_d_name"),
    ("g_p", "g_p_name"),
)
RECORD_COLUMNS = [
    "unit",
    "field",
    "rule",
    "value",
    "measure",
    "ratio",
    "median",
    "factor",
    "peers",
    "group",
    "suggestion",
]
_MAD_TO_SIGMA = 1.4826  # MAD x this estimates the standard deviation of normal data


def normalised(plaus: Plausibility, figures: pd.DataFrame) -> pd.DataFrame:
    """log10 of each peer field's normalised figure (scale * field / sum(per)); a column per peer field (in
    the order of the definition, named by field id), NaN where the figure or its normaliser is blank or not
    above 0."""
    out = {}
    for p in plaus.peers:
        if p.field not in figures or any(f not in figures for f in p.per):
            continue
        x = figures[p.field].to_numpy(dtype=float) * p.scale
        if p.per:
            per = figures[list(p.per)].to_numpy(dtype=float)
            den = np.where(np.isnan(per).all(axis=1), np.nan, np.nansum(per, axis=1))
            with np.errstate(invalid="ignore", divide="ignore"):
                x = np.where(den > 0, x / den, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[p.field] = np.where(x > 0, np.log10(x), np.nan)
    return pd.DataFrame(out, index=figures.index)


def peer_findings(
    definition: Definition,
    figures: pd.DataFrame,
    groups: pd.DataFrame,
    skip: pd.DataFrame | None = None,
    levels: tuple[tuple[str, str], ...] = UNIT_LEVELS,
    rules: dict | None = None,
) -> pd.DataFrame:
    """Figures far from their peers' median.

    `figures`: a row per unit (its index), a column per numeric field id. `groups`: indexed like
    `figures`, with a code and a name column per level of `levels` (tried in order). `skip`: (unit, field)
    pairs (columns `unit`, `field`, and `soft`) with a finding already: such a figure is not judged, nor
    are the figures normalised by it, and it is left out of the medians; a `soft` one (a ratio's finding
    that could not tell the slip) is still judged for a magnitude slip only. `rules`: which rule ids to
    use for "high", "low" and the powers 3 and 6 (default PEER_RULES). Returns records with
    RECORD_COLUMNS; `value` is the figure itself, `ratio` the normalised figure, `median` the group's,
    `factor` how many times it is off, `peers` the group's size, `group` its name, `suggestion` the figure
    divided by 10**3 or 10**6."""
    plaus = definition.plausibility
    rules = PEER_RULES if rules is None else rules
    if plaus is None or not plaus.peers or figures.empty:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    y = normalised(plaus, figures)
    if y.empty:
        return pd.DataFrame(columns=RECORD_COLUMNS)
    specs = {p.field: p for p in plaus.peers}
    if skip is not None and not skip.empty:
        y = _mask(y, skip, specs)
    shape = y.shape
    med, mad, count = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape)
    name = np.full(shape, None, dtype=object)
    for code, label in levels:  # the first level with enough peers wins, figure by figure
        key = groups[code].reindex(y.index).to_numpy()
        by = y.groupby(key, sort=False)
        m, n = by.transform("median").to_numpy(), by.transform("count").to_numpy()
        spread = (y - m).abs().groupby(key, sort=False).transform("median").to_numpy()
        use = np.isnan(med) & (n >= plaus.min_peers) & ~np.isnan(m)
        med[use], mad[use], count[use] = m[use], spread[use], n[use]
        name[use] = np.broadcast_to(groups[label].reindex(y.index).to_numpy()[:, None], shape)[use]
    lo = np.array(
        [plaus.min_decades if specs[f].min_decades is None else specs[f].min_decades for f in y.columns]
    )
    hi = np.array(
        [plaus.max_decades if specs[f].max_decades is None else specs[f].max_decades for f in y.columns]
    )
    limit = np.clip(plaus.mad_factor * _MAD_TO_SIGMA * mad, lo, hi)
    dev = y.to_numpy() - med
    low_too = np.array([specs[f].low for f in y.columns])
    with np.errstate(invalid="ignore"):
        far = (dev > limit) | ((dev < -limit) & low_too)
    if not far.any():
        return pd.DataFrame(columns=RECORD_COLUMNS)
    rows, cols = np.nonzero(far)
    d = dev[rows, cols]
    fields = y.columns.to_numpy()[cols]
    # a figure 10**k times its peers' median, give or take the tolerance, is read as typed 10**k too large;
    # the window's lower end moves up by the group's spread, so that a x100 slip in a group that varies a
    # lot is not mistaken for a x1000 one (the suggestion would be wrong)
    sigma = _MAD_TO_SIGMA * mad[rows, cols]
    power = np.zeros(len(d), dtype=int)
    for k in (3, 6):
        if k in rules:
            power[(d >= k - plaus.magnitude_tolerance + sigma) & (d <= k + plaus.magnitude_tolerance)] = k
    rule = np.where(d > 0, rules["high"], rules["low"]).astype(object)
    for k in (3, 6):
        rule[power == k] = rules.get(k, rules["high"])
    value = figures.to_numpy(dtype=float)[rows, figures.columns.get_indexer(fields)]
    out = pd.DataFrame(
        {
            "unit": y.index.to_numpy()[rows],
            "field": fields,
            "rule": rule,
            "value": value,
            "measure": [specs[f].measure for f in fields],
            "ratio": [round_figure(x) for x in 10.0 ** y.to_numpy()[rows, cols]],
            "median": [round_figure(x) for x in 10.0 ** med[rows, cols]],
            "factor": [float(f"{x:.2g}") for x in 10.0 ** np.abs(d)],
            "peers": count[rows, cols].astype(int),
            "group": name[rows, cols],
            "suggestion": np.where(power > 0, value / 10.0**power, np.nan),
        }
    )
    if skip is not None and "soft" in skip and skip["soft"].any():
        soft = pd.MultiIndex.from_frame(skip.loc[skip["soft"], ["unit", "field"]])
        only_magnitude = pd.MultiIndex.from_frame(out[["unit", "field"]]).isin(soft) & (power == 0)
        out = out[~only_magnitude]
    return out.sort_values(["unit", "field"], kind="stable").reset_index(drop=True)


def unit_groups(units: pd.DataFrame) -> pd.DataFrame:
    """The peer groups of each unit of a units list (indexed by unit_code), as UNIT_LEVELS' columns: a key
    and the group's name for messages ("xã thuộc Huyện Tân Lập", "đơn vị thuộc Tỉnh Quảng Ninh")."""
    u = units.set_index("unit_code")
    kind = (
        u["unit_type"].fillna("").astype(str).str.strip()
        if "unit_type" in u
        else pd.Series("", index=u.index)
    )
    typed = kind != ""
    out = pd.DataFrame(index=u.index)
    for short, code, name in (
        ("d", "district_code", "district_name"),
        ("p", "province_code", "province_name"),
    ):
        out[f"g_{short}t"] = (u[code] + "|" + kind).where(typed)
        out[f"g_{short}t_name"] = kind + " thuộc " + u[name]
        out[f"g_{short}"] = u[code]
        out[f"g_{short}_name"] = "đơn vị thuộc " + u[name]
    out["g_t"] = kind.where(typed)
    out["g_t_name"] = kind + " trong danh sách đơn vị"
    return out[[c for level in UNIT_LEVELS for c in level]]


def _mask(y: pd.DataFrame, skip: pd.DataFrame, specs: dict) -> pd.DataFrame:
    """`y` with NaN where the figure has a finding in `skip` (but a soft one), or a field it is normalised
    by has any."""
    soft = skip["soft"].to_numpy(dtype=bool) if "soft" in skip else np.zeros(len(skip), dtype=bool)
    names = sorted({*y.columns, *(p for s in specs.values() for p in s.per)})
    rows = y.index.get_indexer(skip["unit"])
    cols = pd.Index(names).get_indexer(skip["field"])
    known = (rows >= 0) & (cols >= 0)
    every = np.zeros((len(y), len(names)), dtype=bool)
    every[rows[known], cols[known]] = True
    hard = np.zeros_like(every)
    hard[rows[known & ~soft], cols[known & ~soft]] = True
    at = {n: i for i, n in enumerate(names)}
    out = y.to_numpy(copy=True)
    for j, field in enumerate(y.columns):
        mask = hard[:, at[field]].copy()
        for per in specs[field].per:
            mask |= every[:, at[per]]
        out[mask, j] = np.nan
    return pd.DataFrame(out, index=y.index, columns=y.columns)


def _skip_pairs(definition: Definition, findings: pd.DataFrame, unit_of: pd.Series) -> pd.DataFrame:
    """(unit, field, soft) for every finding of the chosen submissions; soft: a ratio's finding without a
    slip diagnosed (peers may still tell the magnitude). A finding on a part of a total counts for the
    total too (a row typed 1,000 times too large makes its total so)."""
    f = findings[findings["submission"].isin(unit_of.index) & findings["field"].notna()]
    ratio_rules = {r.rule for r in definition.plausibility.ratios}
    pairs = pd.DataFrame(
        {
            "unit": unit_of.reindex(f["submission"]).to_numpy(),
            "field": f["field"].to_numpy(),
            "soft": f["rule"].isin(ratio_rules).to_numpy(),
        }
    )
    total_of = {p: t.id for t in definition.fields.values() for p in t.total_of}
    parts = pairs[pairs["field"].isin(total_of)]
    pairs = pd.concat(
        [pairs, parts.assign(field=parts["field"].map(total_of), soft=False)], ignore_index=True
    )
    pairs = pairs.sort_values("soft", kind="stable")  # a hard finding on a figure wins over a soft one
    return pairs.drop_duplicates(["unit", "field"]).reset_index(drop=True)


def add_peer_findings(
    definition: Definition,
    submissions: pd.DataFrame,
    values: pd.DataFrame,
    findings: pd.DataFrame,
    units: pd.DataFrame,
) -> pd.DataFrame:
    """`findings` (rendered, pipeline.findings.ALL_COLUMNS) with the peer findings of the chosen
    submissions added. `submissions`: indexed by submission, with chosen, file, unit_code and unit_name;
    `values`: the validated long frame; `units`: the units list (district, province, type of each unit)."""
    plaus = definition.plausibility
    if plaus is None or not plaus.peers:
        return findings
    chosen = submissions[submissions["chosen"] & submissions["unit_code"].fillna("").astype(bool)]
    if chosen.empty:
        return findings
    needed = {p.field for p in plaus.peers} | {f for p in plaus.peers for f in p.per}
    v = values[values["submission"].isin(chosen.index) & values["field"].isin(needed)]
    unit_of = chosen["unit_code"]
    figures = v.pivot(index="submission", columns="field", values="value")
    figures.index = unit_of.reindex(figures.index).to_numpy()
    groups = unit_groups(units)
    skip = _skip_pairs(definition, findings, unit_of)
    found = peer_findings(definition, figures, groups, skip)
    if found.empty:
        return findings
    # a magnitude told by the peers replaces the ratio's finding on that cell, which could not tell it
    replaced = pd.MultiIndex.from_frame(found[["unit", "field"]])
    soft = findings["rule"].isin({r.rule for r in plaus.ratios}) & findings["submission"].isin(unit_of.index)
    keys = pd.MultiIndex.from_arrays([unit_of.reindex(findings["submission"]).to_numpy(), findings["field"]])
    findings = findings[~(soft.to_numpy() & keys.isin(replaced))]
    sub_of = pd.Series(chosen.index.to_numpy(), index=unit_of.to_numpy())
    found["submission"] = sub_of.reindex(found["unit"]).to_numpy()
    where = v.set_index(["submission", "field"])[["cell", "raw"]]
    at = where.reindex(pd.MultiIndex.from_arrays([found["submission"], found["field"]]))
    meta = definition.frame
    found = found.assign(
        unit_code=found["unit"],
        file=chosen["file"].reindex(found["submission"]).to_numpy(),
        unit_name=chosen["unit_name"].reindex(found["submission"]).to_numpy(),
        cell=at["cell"].to_numpy(),
        value=[
            r if isinstance(r, str) and r.strip() else v
            for r, v in zip(at["raw"], found["value"], strict=True)
        ],
        label=found["field"].map(meta["label"]).to_numpy(),
        sheet=found["field"].map(meta["sheet"]).to_numpy(),
    ).drop(columns="unit")
    return pd.concat([findings, make_findings(found, definition.rules)], ignore_index=True)
