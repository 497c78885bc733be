"""The units list: which wards and communes report, in which district and province."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.definition import DEFAULT_UNITS, DefinitionError
from pipeline.text import nfc, per_distinct, slug, unit_key

UNIT_COLUMNS = [
    "unit_code",
    "unit_name",
    "unit_type",
    "district_code",
    "district_name",
    "province_code",
    "province_name",
]


def load_units(path: Path | str = DEFAULT_UNITS) -> pd.DataFrame:
    """Read a units CSV (columns UNIT_COLUMNS, codes kept as text) and add `key` and `slug`.

    Raises DefinitionError when a column is missing, a code repeats or two names fold to one key.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError) as exc:
        raise DefinitionError(f"{path}: không đọc được danh sách đơn vị: {exc}") from None
    missing = [c for c in UNIT_COLUMNS if c not in df.columns]
    if missing:
        raise DefinitionError(f"{path}: danh sách đơn vị thiếu cột {missing}")
    df = pd.DataFrame({c: per_distinct(df[c], nfc) for c in UNIT_COLUMNS})
    dup = df["unit_code"][df["unit_code"].duplicated()]
    if not dup.empty:
        raise DefinitionError(f"{path}: mã đơn vị bị trùng: {sorted(set(dup))}")
    df["key"] = per_distinct(df["unit_name"], unit_key)
    clash = df[df.duplicated(["district_code", "key"], keep=False)]
    if not clash.empty:
        raise DefinitionError(f"{path}: tên đơn vị trùng nhau sau khi bỏ dấu: {sorted(clash['unit_name'])}")
    df["slug"] = df["unit_code"] + "-" + pd.Series(per_distinct(df["unit_name"], slug), index=df.index)
    df["full_name"] = df["unit_type"].str.capitalize() + " " + df["unit_name"]
    return df.reset_index(drop=True)


def match_unit(units: pd.DataFrame, name: str) -> pd.Series | None:
    """The unit whose folded name equals that of `name` ("P. Đức Chính", "Duc Chinh"), or None."""
    hit = units[units["key"] == unit_key(name)]
    return hit.iloc[0] if len(hit) == 1 else None
