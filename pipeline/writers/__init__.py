"""Writers: the template, the district and province workbooks, the feedback workbooks, the CSVs,
and the xlsx helpers they share.
"""
