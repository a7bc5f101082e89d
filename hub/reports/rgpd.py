"""The RGPD kit, in French, from the lab's settings: the notice to post beside the readers,
the full information text for members (RGPD art. 13), and the entry for the record of
processing (registre des traitements, art. 30). Each as Markdown and as PDF.

The texts say what the hub does with the retention rules in force; what only the lab knows
(who answers requests, who else receives the data, its own security measures) is named
from its settings or left as a visible « à compléter ».
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.core.files import private_file
from hub.models import LabIdentityPublic

TO_FILL_IN = "« à compléter par le lab »"
DOCUMENTS = {
    "affiche": "Affiche à poser près des lecteurs de badge",
    "information-membres": "Information des membres (article 13 du RGPD)",
    "registre": "Fiche du registre des traitements (article 30 du RGPD)",
}


@dataclass(frozen=True)
class KitInputs:
    lab: LabIdentityPublic
    retention: Mapping[str, float | None]  # hub.services.retention.policy()
    helloasso: bool = False  # memberships come from HelloAsso


def _days(days: float | None, forever: str = "sans limite fixée par le hub") -> str:
    if days is None:
        return forever
    if days % 30 == 0 and days <= 360:
        return f"{days / 30:g} mois ({days:g} jours)"
    return f"{days:g} jours"


def _who(lab: LabIdentityPublic) -> str:
    ids = [f"SIRET {lab.siret}" if lab.siret else "", f"RNA {lab.rna}" if lab.rna else ""]
    address = ", ".join(line.strip() for line in lab.address.splitlines() if line.strip())
    return ", ".join(x for x in [lab.name, address or TO_FILL_IN, *ids] if x)


def _contact(lab: LabIdentityPublic) -> str:
    return lab.privacy_contact or TO_FILL_IN


def notice(kit: KitInputs) -> str:
    lab, r = kit.lab, kit.retention
    return f"""# Accès aux machines par badge

**{lab.name}** ouvre ses machines (découpe laser, imprimantes 3D, fraiseuses...) avec un
badge. Chaque passage de badge est enregistré.

- **Pourquoi :** n'ouvrir une machine qu'aux membres formés à son usage, compter le temps
  d'utilisation pour le facturer et pour l'entretien des machines.
- **Ce qui est enregistré :** le numéro du badge, une référence de membre (jamais le nom sur
  la machine), la machine, l'heure, et la raison d'un refus.
- **Combien de temps :** les lectures de badge et les refus, {_days(r.get("badge_events"))} ;
  les sessions facturées portent la référence du membre {_days(r.get("sessions"))}, puis un
  pseudonyme ; les relevés et avoirs, 10 ans (obligation comptable).
- **Qui y a accès :** l'équipe du lab qui gère les machines et la facturation.

Vous pouvez consulter, corriger ou faire effacer vos données, ou vous opposer à leur usage :
écrivez à {_contact(lab)}. Si vous estimez que vos droits ne sont pas respectés, vous pouvez
saisir la CNIL (www.cnil.fr).

Responsable du traitement : {_who(lab)}.
"""


def member_information(kit: KitInputs) -> str:
    lab, r = kit.lab, kit.retention
    source = (
        "Vos nom, adresse électronique et formule d'adhésion proviennent de votre adhésion sur "
        "HelloAsso ; vos recharges de crédit, de vos paiements HelloAsso."
        if kit.helloasso
        else "Vos nom et adresse électronique sont ceux que vous avez donnés en adhérant."
    )
    return f"""# Vos données personnelles et l'accès aux machines

## Qui est responsable
{_who(lab)}. Pour toute question ou demande sur vos données : {_contact(lab)}.
Délégué à la protection des données : {TO_FILL_IN} (facultatif pour la plupart des associations).

## Ce que nous faisons de vos données, et sur quelle base
1. **Gérer votre adhésion et vos formations** (qui est membre, dans quelle catégorie, formé à
   quelles machines) : exécution du contrat d'adhésion (art. 6.1.b du RGPD).
2. **Ouvrir les machines à badge** aux seuls membres formés, et garder trace des refus :
   exécution du contrat et intérêt légitime du lab à la sécurité des personnes et des machines
   (art. 6.1.b et 6.1.f).
3. **Facturer l'usage des machines** et tenir la comptabilité (relevés, avoirs, crédit
   prépayé) : exécution du contrat et obligation légale comptable (art. 6.1.b et 6.1.c).
4. **Entretenir les machines et rendre compte** de leur usage aux financeurs, avec des
   statistiques qui ne nomment personne : intérêt légitime (art. 6.1.f).

## Quelles données
Identité (nom, adresse électronique), catégorie de membre, langue, numéro de badge,
formations reçues, sessions sur les machines (machine, début, fin, temps de travail de la
machine), travaux d'impression (nom de fichier, durée), solde prépayé et ses mouvements,
relevés et avoirs. {source}
Les machines ne reçoivent jamais votre nom : seulement une référence et votre numéro de badge.

## Qui les reçoit
Les personnes du lab chargées des machines, de la formation et de la facturation, chacune
selon son rôle ; le trésorier et le logiciel de comptabilité du lab (écritures du mois) ;
{TO_FILL_IN} (autres destinataires éventuels). Aucune donnée n'est transmise hors de l'Union
européenne par le hub.

## Combien de temps
- lectures de badge et refus : {_days(r.get("badge_events"))} ;
- sessions facturées : nominatives {_days(r.get("sessions"))}, puis rattachées à un
  pseudonyme (les chiffres restent, votre nom non) ;
- relevés, avoirs et mouvements du crédit prépayé : 10 ans (article L123-22 du code de
  commerce) ;
- autres événements techniques : {_days(r.get("events"))} ;
- votre fiche de membre : le temps de votre adhésion ; à votre départ, vous pouvez en
  demander l'effacement (vos données personnelles sont effacées, les relevés restent).

## Décision automatique
L'ouverture d'une machine est décidée automatiquement (membre actif, formé à la machine, crédit
suffisant le cas échéant). Si un refus vous semble injustifié, un membre de l'équipe
l'examine à votre demande.

## Vos droits
Vous pouvez accéder à vos données (le hub les exporte pour vous), les faire rectifier ou
effacer, demander la limitation de leur usage, vous y opposer pour les traitements fondés sur
l'intérêt légitime, et les recevoir dans un format réutilisable. Écrivez à {_contact(lab)} ;
nous répondons dans un délai d'un mois. Vous pouvez aussi adresser une réclamation à la CNIL
(3 place de Fontenoy, TSA 80715, 75334 Paris Cedex 07, www.cnil.fr).
"""


def register_entry(kit: KitInputs) -> str:
    lab, r = kit.lab, kit.retention
    helloasso = " ; adhésions et paiements HelloAsso" if kit.helloasso else ""
    rows = [
        ("Responsable du traitement", _who(lab)),
        ("Contact pour les données", _contact(lab)),
        ("Date de création de la fiche", TO_FILL_IN),
        (
            "Finalités",
            "contrôle d'accès aux machines réservé aux membres formés ; suivi des formations ; "
            "facturation de l'usage et crédit prépayé ; maintenance des machines ; "
            "statistiques pseudonymes pour les financeurs",
        ),
        (
            "Bases légales",
            "contrat d'adhésion (6.1.b) ; obligation comptable (6.1.c) ; intérêt légitime : "
            "sécurité des personnes et des machines (6.1.f)",
        ),
        (
            "Personnes concernées",
            "membres du lab, formateurs, personnes chargées de la maintenance, payeurs "
            "(entreprises, écoles)",
        ),
        (
            "Catégories de données",
            "identité (nom, courriel), catégorie, langue, numéro de badge, formations, sessions "
            f"et temps machine, travaux, solde prépayé, relevés et avoirs{helloasso}",
        ),
        ("Données sensibles", "aucune"),
        (
            "Destinataires",
            "personnes habilitées du lab selon leur rôle ; trésorier ; logiciel comptable "
            f"(Paheko ou Dolibarr) ; {TO_FILL_IN}",
        ),
        ("Transferts hors UE", "aucun par le hub"),
        (
            "Durées de conservation",
            f"lectures de badge et refus : {_days(r.get('badge_events'))} ; sessions facturées "
            f"nominatives : {_days(r.get('sessions'))}, puis pseudonymisées ; relevés, avoirs, "
            f"mouvements : 10 ans ; événements techniques : {_days(r.get('events'))} ; "
            f"télémétrie des machines : {_days(r.get('telemetry'))}",
        ),
        (
            "Mesures de sécurité",
            "les machines ne reçoivent qu'une référence et le numéro de badge, jamais le nom ; "
            "liste d'accès signée (Ed25519) ; MQTT sur TLS avec un compte par machine ; accès "
            "par rôles et journal d'audit ; mots de passe hachés ; purge automatique horaire ; "
            f"sauvegardes : {TO_FILL_IN}",
        ),
        (
            "Analyse d'impact (AIPD)",
            "non requise pour un contrôle d'accès par badge sans biométrie ; à revoir si le "
            "traitement change",
        ),
    ]
    table = "\n".join(f"| {head} | {text} |" for head, text in rows)
    return (
        "# Registre des traitements : accès aux machines par badge et facturation\n\n"
        f"| Rubrique | Contenu |\n| --- | --- |\n{table}\n"
    )


GENERATORS = {
    "affiche": notice,
    "information-membres": member_information,
    "registre": register_entry,
}


def kit_markdown(kit: KitInputs) -> dict[str, str]:
    return {name: make(kit) for name, make in GENERATORS.items()}


def markdown_pdf(text: str, path: Path | None = None) -> bytes:
    """A plain rendering of the kit's Markdown (titles, paragraphs, lists, two-column
    tables) with the shipped Unicode font."""
    from hub.reports.statements import FONT, _unicode_pdf

    pdf: Any = _unicode_pdf()
    pdf.set_margins(18, 16, 18)
    pdf.add_page()
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            pdf.ln(2)
            continue
        if line.startswith("# "):
            pdf.set_font(FONT, "B", 15)
            pdf.multi_cell(0, 8, line[2:], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif line.startswith("## "):
            pdf.set_font(FONT, "B", 12)
            pdf.multi_cell(0, 7, line[3:], new_x="LMARGIN", new_y="NEXT")
        elif line.startswith("| ---") or line.startswith("| Rubrique"):
            continue
        elif line.startswith("| "):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            pdf.set_font(FONT, "B", 9)
            pdf.multi_cell(0, 5, cells[0], new_x="LMARGIN", new_y="NEXT")
            pdf.set_font(FONT, "", 9)
            pdf.multi_cell(0, 5, " | ".join(cells[1:]), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        else:
            pdf.set_font(FONT, "", 10)
            shown = line.replace("**", "")
            if shown.startswith("- "):
                shown = "• " + shown[2:]
            pdf.multi_cell(0, 5, shown, new_x="LMARGIN", new_y="NEXT")
    data = bytes(pdf.output())
    if path is not None:
        private_file(path).write_bytes(data)
    return data


def write_kit(kit: KitInputs, out: Path) -> list[Path]:
    """The three documents as `NAME.md` and `NAME.pdf` in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in kit_markdown(kit).items():
        md = out / f"{name}.md"
        private_file(md).write_text(text, encoding="utf-8")
        pdf = out / f"{name}.pdf"
        markdown_pdf(text, pdf)
        written += [md, pdf]
    return written
