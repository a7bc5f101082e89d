"""Moved: billing is hub/services/billing/ and its documents hub/reports/statements.py.

Kept only so that branches written before the move still import; new code imports from
hub.services.billing. Delete once no caller is left.
"""

from hub.reports.statements import CSV_HEADER, export_month, write_csv, write_pdf
from hub.services.billing import *  # noqa: F403
from hub.services.billing import __all__ as _moved

__all__ = [*_moved, "CSV_HEADER", "export_month", "write_csv", "write_pdf"]
