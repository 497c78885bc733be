"""Periods in time: which earlier periods a period is compared with, and when its reports are due.

A period id is "2020-H1", "2020-H2" or "2020" (a whole year). `earlier_periods("2020-H1", kinds)` names
the periods a figure is compared with: the previous period ("2019-H2") and the same period a year before
("2019-H1"); a yearly period has "2019" for both. Deadlines come from `schemas/periods.yaml` (a date per
period, else the default rule there) or from `--deadline`; `lateness` turns received times into days
late against a deadline, for all units at once. Nothing here reads the store.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.definition import SCHEMAS_DIR, DefinitionError, check_period

DEFAULT_PERIODS = SCHEMAS_DIR / "periods.yaml"
COMPARISONS = ("previous", "same_last_year")
_PERIOD = re.compile(r"^(\d{4})(?:-(H1|H2))?$")
ON_TIME, LATE, OVERDUE = "Đúng hạn", "Muộn {n} ngày", "Quá hạn {n} ngày"


def _split(period: str) -> tuple[int, str]:
    m = _PERIOD.match(check_period(period))
    return int(m.group(1)), m.group(2) or ""


def earlier_period(period: str, kind: str) -> str:
    """The period `kind` ("previous" or "same_last_year") before `period`: 2020-H1 → 2019-H2 / 2019-H1,
    2020-H2 → 2020-H1 / 2019-H2, 2020 → 2019 / 2019."""
    year, half = _split(period)
    if kind == "same_last_year" or not half:
        return f"{year - 1}-{half}" if half else str(year - 1)
    if kind != "previous":
        raise ValueError(f"unknown comparison {kind!r}")
    return f"{year}-H1" if half == "H2" else f"{year - 1}-H2"


def earlier_periods(period: str, kinds: tuple[str, ...] = COMPARISONS) -> list[tuple[str, str]]:
    """(kind, period) for each kind in order, a period named once (a year's previous is last year)."""
    out: list[tuple[str, str]] = []
    for kind in kinds:
        p = earlier_period(period, kind)
        if p not in (q for _, q in out):
            out.append((kind, p))
    return out


def period_end(period: str) -> dt.date:
    """The last day of a period (30 June for H1, 31 December for H2 and for a year)."""
    year, half = _split(period)
    return dt.date(year, 6, 30) if half == "H1" else dt.date(year, 12, 31)


@dataclass(frozen=True)
class Deadlines:
    """The deadline rule of `schemas/periods.yaml`: a date per period, else `day` of the month that
    comes `months_after_end` months after the period's last month."""

    day: int = 20
    months_after_end: int = 0
    dates: dict[str, dt.date] = field(default_factory=dict)

    def for_period(self, period: str) -> dt.date:
        if period in self.dates:
            return self.dates[period]
        end = period_end(period)
        month = end.month - 1 + self.months_after_end
        year, month = end.year + month // 12, month % 12 + 1
        return dt.date(year, month, min(self.day, calendar.monthrange(year, month)[1]))


def _date(v: object, where: str) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    try:
        return dt.date.fromisoformat(str(v).strip())
    except ValueError:
        raise DefinitionError(f"{where}: ngày không hợp lệ {v!r} (dạng 2020-06-25)") from None


def load_deadlines(path: Path | str = DEFAULT_PERIODS) -> Deadlines:
    """Read the periods file; a missing file gives the default rule. Raises DefinitionError (Vietnamese)
    naming the bad entry."""
    path = Path(path)
    if not path.exists():
        return Deadlines()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DefinitionError(f"{path.name}: không đọc được tệp hạn nộp: {exc}") from None
    if not isinstance(raw, dict):
        raise DefinitionError(f"{path.name}: phải là một bảng khóa-giá trị")
    rule = raw.get("default") or {}
    day, months = rule.get("day", 20), rule.get("months_after_end", 0)
    if not (isinstance(day, int) and 1 <= day <= 31 and isinstance(months, int) and 0 <= months <= 12):
        raise DefinitionError(f"{path.name}: default: 'day' phải từ 1 đến 31, 'months_after_end' từ 0 đến 12")
    dates = {}
    for period, when in (raw.get("deadlines") or {}).items():
        try:
            check_period(str(period))
        except DefinitionError as exc:
            raise DefinitionError(f"{path.name}: deadlines: {exc}") from None
        dates[str(period)] = _date(when, f"{path.name}: deadlines: {period}")
    return Deadlines(day, months, dates)


def parse_deadline(text: str) -> dt.date:
    """A deadline typed on the command line: 2020-06-25 or 25/06/2020. Raises DefinitionError."""
    m = re.fullmatch(r"\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*", text or "")
    try:
        if m:
            return dt.date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        return dt.date.fromisoformat((text or "").strip())
    except ValueError:
        raise DefinitionError(f"hạn nộp không hợp lệ: {text!r} (dạng 25/06/2020 hoặc 2020-06-25)") from None


def local_times(times: pd.Series) -> pd.Series:
    """ISO 8601 times with offsets (the store's, an email's) as naive local clock times of this computer;
    blanks and unreadable texts are NaT."""
    parsed = pd.to_datetime(times, errors="coerce", utc=True, format="ISO8601")
    zone = dt.datetime.now().astimezone().tzinfo
    return parsed.dt.tz_convert(zone).dt.tz_localize(None)


def lateness(received: pd.Series, deadline: dt.date | None, today: dt.date) -> tuple[pd.Series, pd.Series]:
    """Days late and the Vietnamese word for each unit: received on or before the deadline day is
    "Đúng hạn" (0), after it "Muộn n ngày" (n); nothing received yet and the deadline past "Quá hạn n
    ngày" (n, counted to `today`). `received` holds naive local times (NaT: nothing received). Without a
    deadline both are blank. Returns (days as a nullable integer Series, texts)."""
    if deadline is None:
        return pd.Series(pd.NA, index=received.index, dtype="Int64"), pd.Series("", index=received.index)
    due = pd.Timestamp(deadline)
    got = received.notna()
    days = (received.dt.normalize() - due).dt.days.clip(lower=0)
    overdue = max((today - deadline).days, 0)
    days = days.where(got, overdue if overdue else np.nan).astype("Int64")
    text = np.where(got, np.where(days.fillna(0) > 0, "L", "O"), np.where(overdue > 0, "Q", ""))
    words = pd.Series(text, index=received.index).map({"O": ON_TIME, "L": LATE, "Q": OVERDUE, "": ""})
    n = days.astype("string").fillna("")
    return days, pd.Series([w.format(n=k) for w, k in zip(words, n, strict=True)], index=received.index)
