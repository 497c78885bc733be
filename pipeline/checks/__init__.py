"""Checks: parse and validate every value (pandera), the definition's cross-checks, plausibility
within a unit and among peers.
"""
