"""What the workbook writers of one run compute once and reuse across workbooks, in one object.

A run makes one `WriterCache` and passes it to the writers (a forked worker inherits it and fills its
own copy); nothing is kept in module globals, so a second run in the same process, or a test, starts
clean, and a definition edited between two runs is never served an earlier run's prototype.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

_MISSING = object()


class WriterCache:
    """Tables of values made once: `prototypes` (pipeline.writers.feedback: (definition, period) → prototype),
    `formulas` (pipeline.writers.worksheet: conditional-format formulas as xlsxwriter prepares them, 2 ms of a
    district workbook), `heights` (pipeline.writers.xlsx: row heights of the same labels and notes in every
    workbook), `validations` (pipeline.writers.template: one options dict per distinct rule, so cells
    sharing a rule share one validation range). Each table holds at most `limit` entries (emptied when
    full: the same few dozen keys come back in every workbook)."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.prototypes: dict = {}
        self.formulas: dict = {}
        self.heights: dict = {}
        self.validations: dict = {}

    def get(self, table: dict, key: Hashable, make: Callable[[], Any]) -> Any:
        """`table[key]`, made by `make()` and kept on first use."""
        hit = table.get(key, _MISSING)
        if hit is _MISSING:
            if len(table) >= self.limit:
                table.clear()
            hit = table[key] = make()
        return hit
