"""Email addresses of the units: the optional `email` column of the units list.

A cell holds one or more addresses separated by ";" or ","; addresses compare case-insensitively.
"""

from __future__ import annotations

import email.utils
import re
from pathlib import Path

import pandas as pd

from pipeline.definition import DefinitionError

_SPLIT = re.compile(r"[;,\s]+")
_ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


def normalise_address(text: str) -> str:
    """An address as compared: the bare address of "Tên <a@b.vn>", lower case, stripped."""
    return email.utils.parseaddr(text or "")[1].strip().lower()


def unit_addresses(units: pd.DataFrame, units_path: Path | str | None = None) -> dict[str, list[str]]:
    """unit_code → its addresses (lower case, in the order written; units without one are left out).

    Reads `units["email"]` when the frame has it, else the column of the CSV at `units_path` (the
    units loader keeps only its known columns). Raises DefinitionError naming the unit of an entry
    that is not an address."""
    if "email" in units.columns:
        column = dict(zip(units["unit_code"], units["email"], strict=True))
    elif units_path is not None and Path(units_path).suffix.lower() == ".csv":
        try:
            raw = pd.read_csv(units_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (OSError, ValueError) as exc:
            raise DefinitionError(f"{units_path}: không đọc được danh sách đơn vị: {exc}") from None
        if "email" not in raw.columns:
            return {}
        column = dict(zip(raw["unit_code"].str.strip(), raw["email"], strict=True))
    else:
        return {}
    out: dict[str, list[str]] = {}
    for code, cell in column.items():
        found = []
        for entry in _SPLIT.split(str(cell or "").strip()):
            if not entry:
                continue
            address = normalise_address(entry)
            if not _ADDRESS.match(address):
                raise DefinitionError(
                    f"danh sách đơn vị, đơn vị {code}: «{entry}» không phải là địa chỉ thư điện tử hợp lệ"
                )
            if address not in found:
                found.append(address)
        if found:
            out[code] = found
    return out


def sender_units(addresses: dict[str, list[str]]) -> dict[str, str]:
    """address → unit_code, for addresses that belong to exactly one unit (a shared address names no
    unit: its mail is reported as from an unknown sender rather than credited to the wrong ward)."""
    owners: dict[str, set[str]] = {}
    for code, found in addresses.items():
        for address in found:
            owners.setdefault(address, set()).add(code)
    return {a: next(iter(c)) for a, c in owners.items() if len(c) == 1}
