"""xlsxwriter's worksheet with the two things every workbook tonghop writes needs from it.

- Text shaped like rich-text XML stays text. xlsxwriter keeps a rich string as the XML of its runs and
  tells one from plain text by its shape alone: any string that starts with "<r>" and ends with "</r>"
  is written into the workbook unescaped. A ward's cell or file name of that shape would give a
  workbook Excel has to repair, or shift every shared string after it. Such a text is given to
  xlsxwriter as one plain run holding the escaped text, which reads back as the text itself.
- Formulas are prepared once: xlsxwriter runs about 400 regular expressions over each formula of a
  conditional format, and every district workbook has the same few (2 ms of the 55 ms one takes). The
  prepared ones are kept in `formulas`, the run's WriterCache table the writer gives the sheet.

Both override private methods of xlsxwriter's Worksheet (tests/test_worksheet.py checks that they are
still called); the classes are given to `Workbook.add_worksheet(name, worksheet_class=...)`.
"""

from __future__ import annotations

from xlsxwriter import worksheet as _xw

MAX_TEXT = 32_767  # Excel's longest cell text, in UTF-16 units
_FORMULAS_KEPT = 4096


def _utf16(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-16-le")) // 2


def _looks_rich(s: str) -> bool:
    return s.startswith("<r>") and s.endswith("</r>")


def _run(s: str) -> str:
    """`s` as one plain rich-text run: what xlsxwriter writes as is and every reader shows as `s`."""
    text = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f'<r><t xml:space="preserve">{text}</t></r>'


class Worksheet(_xw.Worksheet):
    formulas: dict | None = None  # formula key → prepared formula (pipeline.writers.cache); None: not kept

    def _write_string(self, row, col, string, cell_format=None):
        if not _looks_rich(string):
            return super()._write_string(row, col, string, cell_format)
        cut = 0
        while _utf16(_run(string)) > MAX_TEXT:  # cut the text, not the XML around it
            string, cut = string[:len(string) - max(1, _utf16(_run(string)) - MAX_TEXT)], -2
            if not _looks_rich(string):
                return super()._write_string(row, col, string, cell_format) or cut
        return super()._write_string(row, col, _run(string), cell_format) or cut

    def _prepare_formula(self, formula, *args, **kwargs):
        kept = self.formulas
        if kept is None:
            return super()._prepare_formula(formula, *args, **kwargs)
        key = (formula, args, tuple(sorted(kwargs.items())), self.use_future_functions)
        prepared = kept.get(key)
        if prepared is None:
            if len(kept) >= _FORMULAS_KEPT:
                kept.clear()
            prepared = kept[key] = super()._prepare_formula(formula, *args, **kwargs)
        return prepared
