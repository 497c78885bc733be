"""History: the SQLite store, what a run reads from and records in it, earlier periods, changes
between versions, importing earlier results.
"""
