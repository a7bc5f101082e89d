"""The hub's documents, read from the database: usage statistics and their exports (CSV, JSON,
XLSX), the yearly review for funders (PDF, XLSX) and members' statements.

- inputs.py: what a person asks for (days, formats, opening hours), refused with InvalidValue;
- usage.py: the usage figures in one streamed pass (the rules of hub/domain/statistics.py);
- usage_files.py: those figures as CSV, JSON and XLSX files, with one row per session on demand;
- review.py: the yearly review and its PDF and XLSX documents;
- statements.py: a month's statements and credit notes as CSV and PDF.

hub/services/statistics.py is what the API, the web and the CLI call.
"""
