"""`atelier hub user`: logins for the web pages and the API, and their tokens."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.audit import cli_actor, record
from hub.cli.support import database, fail, refusals

user_app = typer.Typer(no_args_is_help=True, help="Users: logins, roles and API tokens.")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]
ROLES = "member, trainer, maintainer, manager or admin"


@contextmanager
def _session(config: Path | None) -> Iterator[Any]:
    from sqlmodel import Session

    with database(config) as (_, engine), Session(engine) as session:
        yield session


_fail = fail


def _role(value: str) -> Any:
    from hub.models import Role

    try:
        return Role(value.lower())
    except ValueError:
        raise _fail(f"--role {value!r} is not a role: use {ROLES}") from None


def _user(session: Any, username: str) -> Any:
    from sqlmodel import select

    from hub.models import User

    user = session.exec(select(User).where(User.username == username.strip().lower())).first()
    if user is None:
        raise _fail(f"no user {username!r}: `atelier hub user list` shows them")
    return user


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@user_app.command("add")
def add_user(
    username: str,
    role: Annotated[str, typer.Option(help=ROLES)] = "member",
    member: Annotated[
        str | None, typer.Option(help="the member's email, to link the login to them")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Create a login. Trainers must be linked to their member to grant trainings."""
    from hub.services.accounts import add_user
    from hub.services.member_data import find_member

    chosen = _role(role)
    with _session(config) as session:
        linked = None
        if member:
            try:
                linked = find_member(session, member)
            except LookupError as exc:
                raise _fail(f"--member: {exc}") from None
        password = _password(password_stdin)
        with refusals(username="USERNAME", member_id="--member", password="the password"):
            user = add_user(
                session,
                username=username,
                password=password,
                role=chosen,
                actor=cli_actor(),
                member=linked,
            )
        session.commit()
        typer.echo(f"user {user.username} created ({chosen.value})")


@user_app.command("list")
def list_users(config: ConfigOpt = None) -> None:
    """Every login with its role and state."""
    from sqlmodel import select

    from hub.models import User

    with _session(config) as session:
        for user in session.exec(select(User).order_by(User.username)):
            state = "active" if user.active else "disabled"
            typer.echo(f"{user.username}\t{user.role.value}\t{state}")


@user_app.command("passwd")
def change_password(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
    config: ConfigOpt = None,
) -> None:
    """Set a new password; it ends the user's web sessions and unlocks the account."""
    from hub.services.accounts import revoke_tokens_of, set_password

    with _session(config) as session:
        user = _user(session, username)
        with refusals(password="the password"):
            set_password(user, _password(password_stdin))
        revoke_tokens_of(session, user, kind="web")
        session.add(user)
        record(
            session, actor=cli_actor(), action="user.passwd", entity="user", entity_id=user.username
        )
        session.commit()
        typer.echo(f"password of {user.username} changed")


@user_app.command("set")
def set_user(
    username: str,
    role: Annotated[str | None, typer.Option(help=ROLES)] = None,
    active: Annotated[bool | None, typer.Option("--active/--disabled")] = None,
    config: ConfigOpt = None,
) -> None:
    """Change a role, or disable a login (which revokes all its tokens)."""
    from hub.services.accounts import revoke_tokens_of

    with _session(config) as session:
        user = _user(session, username)
        if role is not None:
            user.role = _role(role)
        if active is not None:
            user.active = active
            if not active:
                revoke_tokens_of(session, user)
        session.add(user)
        record(
            session,
            actor=cli_actor(),
            action="user.update",
            entity="user",
            entity_id=user.username,
            role=user.role.value,
            active=user.active,
        )
        session.commit()
        typer.echo(f"{user.username}: {user.role.value}, {'active' if user.active else 'disabled'}")


@user_app.command("token")
def new_token(
    username: str,
    name: Annotated[str, typer.Option(help="what it is for, e.g. prometheus")],
    days: Annotated[int | None, typer.Option(help="expires after this many days")] = None,
    config: ConfigOpt = None,
) -> None:
    """Issue an API token; it is printed once, keep it in a secret store."""
    from hub.services.accounts import create_api_token, token_lifetime

    with refusals(expires_in_days="--days"):
        token_lifetime(days)  # refused before the database is opened
    with _session(config) as session:
        user = _user(session, username)
        with refusals(expires_in_days="--days"):
            raw, _ = create_api_token(
                session, user=user, name=name, expires_in_days=days, actor=cli_actor()
            )
        session.commit()
        typer.echo(raw)


@user_app.command("revoke-token")
def revoke(
    prefix: Annotated[str, typer.Argument(help="the token's first 12 characters")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a token at once, by the prefix `atelier hub user tokens` shows."""
    from hub.services.accounts import revoke_token_by_prefix

    with _session(config) as session:
        with refusals(prefix="PREFIX"):
            revoke_token_by_prefix(session, prefix=prefix, actor=cli_actor())
        session.commit()
        typer.echo(f"token {prefix} revoked")


@user_app.command("tokens")
def list_tokens(username: str, config: ConfigOpt = None) -> None:
    """A user's tokens (prefix, name, state); never the secrets, which are not stored."""
    from sqlmodel import select

    from hub.models import ApiToken

    with _session(config) as session:
        user = _user(session, username)
        for token in session.exec(select(ApiToken).where(ApiToken.user_id == user.id)):
            state = "revoked" if token.revoked_at else "live"
            typer.echo(f"{token.prefix}\t{token.kind}\t{token.name}\t{state}")
