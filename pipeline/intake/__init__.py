"""Intake: what an inbox holds, the pre-scan of untrusted files, the supervised reader, who sent
what (file → inbox → guard → isolation/reader → identify).
"""
