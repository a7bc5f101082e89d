"""The month's journal entries as the files Paheko and Dolibarr import.

Paheko (import of entries, *simple* format: one line per entry, a debit and a credit
account): `Numéro d'écriture` (left empty: a new entry), `Date` (dd/mm/yyyy), `Libellé`,
`Compte de débit`, `Compte de crédit`, `Montant` (decimal comma), `Numéro pièce comptable`,
`Référence paiement`, `Remarques`; semicolons.
Dolibarr (accounting module, import of the general ledger): one line per debit or credit,
`Num. écriture` (b.piece_num, the same for both lines of an entry), `Date` (b.doc_date,
YYYY-MM-DD), `Pièce` (b.doc_ref), `Journal` (b.code_journal), `Libellé journal`,
`Compte comptable` (b.numero_compte), `Libellé du compte`, `Compte auxiliaire`,
`Libellé du compte auxiliaire`, `Libellé opération` (b.label_operation), `Débit`, `Crédit`
(decimal point), `Direction` (b.sens: D or C); commas.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.domain.accounting import Accounts, Entry
from hub.reports.csv_files import CsvDialect, write_csv_file

PAHEKO_HEADER = [
    "Numéro d'écriture",
    "Date",
    "Libellé",
    "Compte de débit",
    "Compte de crédit",
    "Montant",
    "Numéro pièce comptable",
    "Référence paiement",
    "Remarques",
]
DOLIBARR_HEADER = [
    "Num. écriture",
    "Date",
    "Pièce",
    "Journal",
    "Libellé journal",
    "Compte comptable",
    "Libellé du compte",
    "Compte auxiliaire",
    "Libellé du compte auxiliaire",
    "Libellé opération",
    "Débit",
    "Crédit",
    "Direction",
]
# Paheko's French CSV, without the byte-order mark Excel wants.
PAHEKO = CsvDialect("paheko", ";", False, True, True, "\r\n")
# Dolibarr's import: commas, a decimal point, ISO dates.
DOLIBARR = CsvDialect("dolibarr", ",", False, False, False, "\r\n")
FORMATS = ("paheko", "dolibarr")


def _euros(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def _paheko_rows(entries: list[Entry]) -> Iterator[list[Any]]:
    for e in entries:
        yield ["", e.day, e.label, e.debit, e.credit, _euros(e.cents), e.piece, "", "Atelier"]


def _dolibarr_rows(entries: list[Entry], accounts: Accounts) -> Iterator[list[Any]]:
    names = {
        accounts.sales: "Prestations de services",
        accounts.members: "Adhérents et clients",
        accounts.prepaid: "Clients créditeurs (prépayé)",
        accounts.bank: "Banque",
    }
    journals = {accounts.sales_journal: "Ventes", accounts.bank_journal: "Banque"}
    for e in entries:
        head = [e.number, e.day, e.piece, e.journal, journals.get(e.journal, "")]
        zero = Decimal("0.00")
        yield [*head, e.debit, names.get(e.debit, ""), "", "", e.label, _euros(e.cents), zero, "D"]
        yield [
            *head,
            e.credit,
            names.get(e.credit, ""),
            "",
            "",
            e.label,
            zero,
            _euros(e.cents),
            "C",
        ]


def write_books(
    entries: list[Entry], path: Path, *, fmt: str, accounts: Accounts, tz: ZoneInfo
) -> Path:
    """The entries in `fmt` (paheko or dolibarr) at `path`."""
    if fmt == "paheko":
        return write_csv_file(path, PAHEKO_HEADER, _paheko_rows(entries), dialect=PAHEKO, tz=tz)
    return write_csv_file(
        path, DOLIBARR_HEADER, _dolibarr_rows(entries, accounts), dialect=DOLIBARR, tz=tz
    )
