"""tonghop: collect, validate and consolidate the reports that wards send to their district."""

__version__ = "0.1.0"
