"""Realistic figures for generated units, and the slips a ward makes, labelled (bench.py, plausibility.py).

`realistic(unit, rng)` draws one unit's report: skewed, correlated figures shaped like Vietnam's
commune-level units (DOMAIN.md, "Plausible ranges"; the 2019 census; GSO income surveys). A unit is a city
ward (phường), a town (thị trấn), a rural commune or a highland commune; its district and province shift
its level (a richer province, a denser district). Every figure is drawn on a log scale around the
profile's median, with the unit's size carried through: households from population and persons per
household, villages from population and village size, production value from income and population,
classes and participants from population, and so on. A few percent of units are unusual but true (a
district's single huge ward, an arts programme with a large audience, an industrial commune producing far
more than its people earn); they are clean, and a warning on them is a false alarm.

`make_slip(values, kind, rng)` applies one slip of `SLIP_KINDS` to a unit's figures and returns the label
(kind, field, factor) that recall is computed from.
"""

from __future__ import annotations

import datetime as dt
import random

from sample_inbox import RATINGS, REPORTERS  # (samples/ is on the path of bench.py and the tests)

ROWS = [
    "literacy",
    "vocational",
    "law",
    "health",
    "environment",
    "culture",
    "economy",
    "life_skills",
    "other",
    "arts_sports",
]
# Highland provinces of the generator's list (most of their districts are highland districts).
HIGHLAND_PROVINCES = {
    "Lào Cai",
    "Yên Bái",
    "Tuyên Quang",
    "Kon Tum",
    "Gia Lai",
    "Đắk Lắk",
    "Lâm Đồng",
    "Bình Phước",
    "Quảng Trị",
    "Quảng Nam",
    "Quảng Ngãi",
    "Thanh Hóa",
    "Nghệ An",
    "Bắc Giang",
}

# Medians and spreads (log10 standard deviation, "decades") per kind of unit. Population: urban phường
# 10,000-40,000, rural xã 2,000-10,000 (DOMAIN.md); persons per household 3.5 nationally (2019 census),
# lower in cities, higher in the highlands; villages of a few hundred people, urban quarters of 1,000+;
# income 50 million đồng a person a year nationally (2020), about 70 in cities and 25-35 in the highlands;
# density (persons/ha) about 60 in city wards (6,000/km2), 5 in the delta's communes, under 1 in the
# highlands, never beyond about 1,000 (the densest wards of Hà Nội and TP HCM, 2019 census).
PROFILES = {
    "urban": {
        "pop": (15000, 0.22),
        "pph": 3.2,
        "density": (60, 0.35),
        "per_quarter": (1600, 0.2),
        "income": 70,
        "poor": (0.006, 0.35),
        "literacy": (98.5, 100),
        "waste": (85, 100),
    },
    "town": {
        "pop": (11000, 0.18),
        "pph": 3.4,
        "density": (12, 0.3),
        "per_quarter": (1100, 0.2),
        "income": 55,
        "poor": (0.02, 0.3),
        "literacy": (97, 100),
        "waste": (75, 98),
    },
    "rural": {
        "pop": (7500, 0.2),
        "pph": 3.6,
        "density": (5, 0.2),
        "per_quarter": (750, 0.2),
        "income": 42,
        "poor": (0.035, 0.3),
        "literacy": (95, 100),
        "waste": (50, 92),
    },
    "highland": {
        "pop": (4500, 0.22),
        "pph": 4.4,
        "density": (0.6, 0.3),
        "per_quarter": (420, 0.2),
        "income": 27,
        "poor": (0.15, 0.25),
        "literacy": (82, 99),
        "waste": (20, 75),
    },
}
# Typical participants a class and share of women, per activity (DOMAIN.md: 20-150 a class).
_CLASS = {
    "literacy": (18, 0.62),
    "vocational": (28, 0.45),
    "law": (60, 0.55),
    "health": (60, 0.6),
    "environment": (50, 0.55),
    "culture": (60, 0.55),
    "economy": (40, 0.5),
    "life_skills": (50, 0.55),
    "other": (50, 0.55),
    "arts_sports": (80, 0.55),
}
_ACTIVE = {"urban": 0.55, "town": 0.6, "rural": 0.6, "highland": 0.55}  # chance that a row has classes

# The slips of the plausibility benchmark. A magnitude slip multiplies one figure by a power of ten (a
# figure typed with extra zeros, or in the wrong unit: đồng or nghìn for triệu, m2 for ha).
MAGNITUDE_FIELDS = [
    "population",
    "households",
    "area_ha",
    "quarters",
    "production_value_bn",
    "income_per_capita_mn",
    "culture_houses",
    "law_bookcases",
    "conferences",
    "conference_attendees",
    "poor_households",
    "near_poor_households",
    "*.classes",
    "*.participants",
    "*.female",
]
FACTORS = [10, 100, 1000, 1_000_000]
SPECIAL_SLIPS = ["classes-over-participants", "date-year-after", "date-year-before", "culture-houses-250"]
SLIP_KINDS = [f"x{f}:{field}" for field in MAGNITUDE_FIELDS for f in FACTORS] + SPECIAL_SLIPS


def _logn(rng: random.Random, median: float, spread: float) -> float:
    """A log-normal draw: median * 10**(spread * N(0, 1))."""
    return median * 10 ** (spread * rng.gauss(0, 1))


def unit_kind(unit_type: str, highland: bool) -> str:
    """urban (phường), town (thị trấn), rural or highland (xã)."""
    if unit_type == "phường":
        return "urban"
    if unit_type == "thị trấn":
        return "town"
    return "highland" if highland else "rural"


def level(key: str, spread: float) -> float:
    """A deterministic log-normal factor for a province or a district (its wealth, its density)."""
    return _logn(random.Random(f"tonghop-bench-level-{key}"), 1.0, spread)


def realistic(
    unit: dict, rng: random.Random, period_end: dt.date = dt.date(2020, 6, 30)
) -> dict[str, object]:
    """One unit's report figures. `unit` needs unit_type, district_code, province_code and `highland`
    (bool); `rng` is the unit's own generator. Returns field id -> value (totals included)."""
    kind = unit_kind(unit["unit_type"], unit.get("highland", False))
    p = PROFILES[kind]
    wealth = level(f"p{unit['province_code']}", 0.1) * level(f"d{unit['district_code']}", 0.06)
    size = level(f"s{unit['district_code']}", 0.1)
    tail = 2.0 if rng.random() < 0.03 else 1.0  # a few units far from their kind's usual size
    population = max(600, round(_logn(rng, p["pop"][0] * size, p["pop"][1] * tail)))
    pph = min(6.5, max(2.3, _logn(rng, p["pph"], 0.04)))
    households = max(150, round(population / pph))
    quarters = max(2, round(population / _logn(rng, *p["per_quarter"])))
    income = round(_logn(rng, p["income"] * wealth, 0.09), 2)
    output = _logn(rng, 1.8, 0.15)  # gross output per person / income per person
    r = rng.random()
    if r < 0.015:  # an industrial zone in the commune
        output *= _logn(rng, 12, 0.3)
    elif r < 0.06 and kind in ("urban", "town"):  # a residential ward whose people work elsewhere
        output /= _logn(rng, 5, 0.2)
    density = min(1000.0, max(0.03, _logn(rng, p["density"][0] * size, p["density"][1] * tail)))
    v: dict[str, object] = {
        "area_ha": round(population / density, 1),
        "households": households,
        "population": population,
        "quarters": quarters,
        "production_value_bn": round(population * income * output / 1000, 2),
        "income_per_capita_mn": income,
        "board_directors": 1,
        "board_deputies": rng.randrange(1, 4),
        "reporter": rng.choice(REPORTERS),
        "phone": f"0{rng.randrange(203, 299)} {rng.randrange(3000000, 3999999)}",
        "report_date": _report_date(rng, period_end),
    }
    v["board_total"] = 1 + v["board_deputies"]
    # about one culture house per village, fewer in the highlands; a law bookcase at the commune office
    # and in some villages
    share = rng.uniform(0.3, 1.0) if kind == "highland" else rng.uniform(0.6, 1.0)
    v["culture_houses"] = max(0, round(quarters * share) + (1 if rng.random() < 0.3 else 0))
    v["law_bookcases"] = min(quarters + 1, 1 + round(quarters * rng.uniform(0, 1)))
    scale = (population / 7500) ** 0.4
    conferences = round(_logn(rng, 12 * scale, 0.22)) if rng.random() > 0.03 else 0
    v["conferences"] = conferences
    v["conference_attendees"] = round(conferences * _logn(rng, 70, 0.2))
    totals = {"classes": 0, "participants": 0, "female": 0}
    big_event = rng.random() < 0.03  # one programme with a large audience
    for row in ROWS:
        active = _ACTIVE[kind] * (1.6 if row == "literacy" and kind == "highland" else 1.0)
        if row == "literacy" and kind == "urban":
            active = 0.1
        if rng.random() >= active:
            v[f"{row}.classes"] = 0
            continue
        classes = max(1, round(_logn(rng, 2.5 * scale, 0.25)))
        each, women = _CLASS[row]
        if big_event and row == "arts_sports":
            classes, each = rng.randint(1, 2), rng.uniform(250, 600)
        people = max(classes * 3, round(classes * _logn(rng, each, 0.18)))
        female = round(people * min(0.95, max(0.08, rng.gauss(women, 0.1))))
        v |= {f"{row}.classes": classes, f"{row}.participants": people, f"{row}.female": female}
        totals = {
            "classes": totals["classes"] + classes,
            "participants": totals["participants"] + people,
            "female": totals["female"] + female,
        }
    v |= {f"total.{k}": n for k, n in totals.items()}
    poor_rate = min(0.6, _logn(rng, p["poor"][0] * (1 / wealth) ** 1.5, p["poor"][1]))
    poor = round(households * poor_rate)
    near = min(households - poor, round(households * poor_rate * _logn(rng, 1.1, 0.3)))
    v |= {
        "literacy_rate": round(rng.uniform(*p["literacy"]), 1),
        "learners": totals["participants"],
        "poor_households": poor,
        "near_poor_households": near,
        "waste_collection_rate": round(rng.uniform(*p["waste"]), 1),
        "cultural_family_rate": round(rng.uniform(75, 98), 1),
        "cultural_quarter_rate": round(rng.uniform(50, 100), 1),
        "mobilization_unions": rng.choice(RATINGS[:2]),
        "mobilization_business": rng.choice(RATINGS),
        "mobilization_donors": rng.choice(RATINGS),
        "mobilization_note": "Các đoàn thể phối hợp tích cực.",
        "plan_tasks": "Duy trì phong trào học tập suốt đời.\nMở thêm lớp tập huấn kỹ năng sống.",
        "target_participation_rate": rng.randrange(50, 96),
    }
    return v


def _report_date(rng: random.Random, end: dt.date) -> dt.datetime:
    """Most reports are dated in the last weeks of the period; some late, a few early."""
    r = rng.random()
    if r < 0.70:
        days = rng.randint(-25, 0)
    elif r < 0.88:
        days = rng.randint(1, 31)
    elif r < 0.95:
        days = rng.randint(32, 100)
    elif r < 0.99:
        days = rng.randint(-60, -26)
    else:
        days = rng.randint(-85, 170)
    d = end + dt.timedelta(days=days)
    return dt.datetime(d.year, d.month, d.day)


def _active_row(values: dict, rng: random.Random) -> str | None:
    rows = [r for r in ROWS if (values.get(f"{r}.classes") or 0) > 0]
    return rng.choice(rows) if rows else None


def _retotal(values: dict, column: str) -> None:
    values[f"total.{column}"] = sum(int(values.get(f"{r}.{column}") or 0) for r in ROWS)


def make_slip(values: dict, kind: str, rng: random.Random) -> dict | None:
    """Apply slip `kind` (one of SLIP_KINDS) to `values` in place. Returns the label {kind, field, factor}
    or None when the unit has nothing to slip on (no active row, a zero figure)."""
    if kind.startswith("x"):
        factor_text, field = kind[1:].split(":", 1)
        factor = int(factor_text)
        if field.startswith("*."):
            row = _active_row(values, rng)
            if row is None:
                return None
            field = f"{row}.{field[2:]}"
        old = values.get(field)
        if not isinstance(old, (int, float)) or old <= 0:
            return None
        new = old * factor
        values[field] = round(new, 2) if isinstance(old, float) else int(new)
        if "." in field:
            _retotal(values, field.split(".", 1)[1])
        return {"kind": kind, "field": field, "factor": factor}
    if kind == "classes-over-participants":  # the columns swapped, or classes typed for participants
        row = _active_row(values, rng)
        if row is None:
            return None
        people = int(values[f"{row}.participants"])
        if rng.random() < 0.5:
            values[f"{row}.classes"], values[f"{row}.participants"] = people, int(values[f"{row}.classes"])
            values[f"{row}.female"] = min(int(values[f"{row}.female"]), int(values[f"{row}.participants"]))
        else:
            values[f"{row}.classes"] = people + rng.randint(1, max(2, people))
        for col in ("classes", "participants", "female"):
            _retotal(values, col)
        return {"kind": kind, "field": f"{row}.classes", "factor": 0}
    if kind in ("date-year-after", "date-year-before"):
        d = values["report_date"]
        year = d.year + (1 if kind == "date-year-after" else -1)
        values["report_date"] = d.replace(year=year, day=min(d.day, 28))
        return {"kind": kind, "field": "report_date", "factor": 0}
    if kind == "culture-houses-250":
        values["culture_houses"] = 250
        return {"kind": kind, "field": "culture_houses", "factor": 0}
    raise ValueError(f"unknown slip {kind}")
