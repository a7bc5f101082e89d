"""Billing as the API, the web, the CLI and the ingest run it: rates, the prepaid ledger,
priced usage, the month's close, the drawdown at each session's end, credit notes.

One module per part; the names a caller needs are re-exported here
(`from hub.services.billing import close_month`).
"""

from hub.models import (
    CREDIT_NOTE,
    STATEMENT,
    BalanceMovement,
    BillingAccount,
    BillingMonth,
    BillingRate,
    Statement,
    StatementLine,
)
from hub.services.billing.books import (
    MONTH_PATTERN,
    euros,
    is_closed,
    lock_books,
    parse_euros,
    parse_month,
)
from hub.services.billing.close import (
    Closing,
    StatementTotals,
    close_month,
    lines_of,
    month_statements,
)
from hub.services.billing.credit_notes import credit
from hub.services.billing.drawdown import PrepaidDrawdown, draw_ended_sessions
from hub.services.billing.ledger import (
    PROVISIONAL,
    account_of,
    account_state,
    balances,
    find_member,
    member_by_email,
    movements,
    set_plan,
    top_up,
)
from hub.services.billing.overview import MemberBilling, Overview, member_billing, overview
from hub.services.billing.rates import (
    RATE_FIELDS,
    all_rates,
    check_rate,
    import_rates,
    import_rates_file,
    save_rate,
    set_offline_jobs,
    set_rate,
)

__all__ = [
    "CREDIT_NOTE",
    "MONTH_PATTERN",
    "PROVISIONAL",
    "RATE_FIELDS",
    "STATEMENT",
    "BalanceMovement",
    "BillingAccount",
    "BillingMonth",
    "BillingRate",
    "Closing",
    "PrepaidDrawdown",
    "Statement",
    "StatementLine",
    "StatementTotals",
    "account_of",
    "account_state",
    "all_rates",
    "balances",
    "check_rate",
    "close_month",
    "credit",
    "draw_ended_sessions",
    "euros",
    "find_member",
    "import_rates_file",
    "import_rates",
    "is_closed",
    "lines_of",
    "lock_books",
    "member_by_email",
    "month_statements",
    "movements",
    "parse_euros",
    "parse_month",
    "set_plan",
    "save_rate",
    "set_offline_jobs",
    "set_rate",
    "member_billing",
    "overview",
    "Overview",
    "MemberBilling",
    "top_up",
]
