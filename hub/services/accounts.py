"""Accounts: users with argon2 passwords, revocable bearer tokens, login lockout.

Only a token's SHA-256 is stored; its secret is shown once. A web login is a token of kind
`web` kept in an HttpOnly cookie, so logging out and revoking work the same way for both.
The API, the web and the CLI call these; refusals are HubErrors (a login refused is
`LoginRefused`, which carries how long to wait). The caller commits, except `login`, which
must keep a failed attempt even when the caller rolls back.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, Forbidden, InvalidValue, NotFound
from hub.models import ApiToken, Member, Role, User
from protocol.limits import INT32_MAX

TOKEN_PREFIX = "atl_"
MIN_PASSWORD_LENGTH = 10
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
WEB_SESSION = timedelta(hours=12)
# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
USERNAME_MAX_CHARS = 80
TOKEN_MAX_DAYS = 3650

_hasher = PasswordHasher()
# Checked against when the username is unknown, so a login takes as long either way and
# does not tell which usernames exist.
_DUMMY_HASH = _hasher.hash("not-a-password-" + secrets.token_hex(8))


class LoginRefused(Exception):
    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidValue(
            "user.password_short", field="password", params={"min": MIN_PASSWORD_LENGTH}
        )
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role,
    member: Member | None = None,
) -> User:
    """A new login (flushed, not committed); a `member` login must be linked to a member."""
    username = username.strip().lower()
    if (
        not username
        or len(username) > USERNAME_MAX_CHARS
        or any(c.isspace() or c == "\x00" for c in username)
    ):
        raise InvalidValue(
            "user.username_invalid", field="username", params={"max": USERNAME_MAX_CHARS}
        )
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise Conflict("user.exists", field="username", params={"username": username})
    if role is Role.MEMBER and member is None:
        raise InvalidValue("user.member_required", field="member_id")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        member_id=member.id if member else None,
    )
    session.add(user)
    session.flush()
    return user


def set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    user.failed_logins = 0
    user.locked_until = None


def issue_token(
    session: Session,
    user: User,
    *,
    name: str,
    kind: str = "api",
    ttl: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[str, ApiToken]:
    """A new token for this user: (the secret, shown once; its row)."""
    now = now or datetime.now(UTC)
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    token = ApiToken(
        user_id=user.id,
        name=name[:100],
        kind=kind,
        token_hash=hash_token(raw),
        prefix=raw[:12],
        created_at=now,
        expires_at=now + ttl if ttl else None,
    )
    session.add(token)
    session.flush()
    return raw, token


def user_for_token(session: Session, raw: str, *, now: datetime | None = None) -> User | None:
    """The active user a live token belongs to, or None."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    now = now or datetime.now(UTC)
    token = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(raw))).first()
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    user = session.get(User, token.user_id)
    if user is None or not user.active:
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.add(token)
        session.commit()
        session.refresh(user)
    return user


def revoke_token(session: Session, token: ApiToken, *, now: datetime | None = None) -> None:
    if token.revoked_at is None:
        token.revoked_at = now or datetime.now(UTC)
        session.add(token)


class FailureWindow:
    """Failed logins per client address over a sliding window: a guesser spreading tries
    over many usernames is slowed down too, not only one account locked."""

    def __init__(self, limit: int = 20, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def retry_after(self, client: str, now: float | None = None) -> int | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) < self.limit:
                return None
            return max(1, int(failures[0] + self.window_s - now) + 1)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures = {k: v for k, v in self._failures.items() if v}


@dataclass
class LoginResult:
    user: User
    token: str
    token_row: ApiToken


def login(
    session: Session,
    *,
    username: str,
    password: str,
    client: str,
    window: FailureWindow,
    now: datetime | None = None,
    kind: str = "web",
    ttl: timedelta = WEB_SESSION,
) -> LoginResult:
    """Check a password and issue a token. Five wrong passwords lock the account for 15
    minutes; twenty failures from one address in 5 minutes slow that address down."""
    now = now or datetime.now(UTC)
    wait = window.retry_after(client)
    if wait is not None:
        raise LoginRefused(
            "too many failed logins from this address; try again later", retry_after=wait
        )
    user = session.exec(select(User).where(User.username == username.strip().lower())).first()
    if user is None:
        _verify(_DUMMY_HASH, password)
        window.failed(client)
        raise LoginRefused("wrong username or password")
    if user.locked_until is not None and user.locked_until > now:
        window.failed(client)
        wait_s = int((user.locked_until - now).total_seconds()) + 1
        raise LoginRefused(
            "this account is locked after too many wrong passwords; try again later",
            retry_after=wait_s,
        )
    if not _verify(user.password_hash, password) or not user.active:
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        session.add(user)
        session.commit()
        window.failed(client)
        raise LoginRefused("wrong username or password")
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    session.add(user)
    raw, row = issue_token(session, user, name=f"{kind} login from {client}", kind=kind, ttl=ttl)
    session.commit()
    session.refresh(user)
    return LoginResult(user, raw, row)


# --- users and tokens, as the API, the web and the CLI manage them ----------------------------
def list_users(session: Session, *, limit: int = 100, offset: int = 0) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.id)).offset(offset).limit(limit)).all())


def user_by_id(session: Session, *, user_id: int) -> User:
    # Ids are 32-bit on PostgreSQL: a larger one names no user (never the driver's overflow).
    user = session.get(User, user_id) if 1 <= user_id <= INT32_MAX else None
    if user is None:
        raise NotFound("user.unknown_id", field="user_id", params={"user": user_id})
    return user


def user_by_name(session: Session, *, username: str) -> User:
    user = session.exec(select(User).where(User.username == username.strip().lower())).first()
    if user is None:
        raise NotFound("user.unknown", field="username", params={"username": username})
    return user


def linked_member(session: Session, *, member_id: int, field: str = "member_id") -> Member:
    """The member a login is to be linked to: a wrong id is a mistake in the request (422)."""
    member = session.get(Member, member_id) if 1 <= member_id <= INT32_MAX else None
    if member is None:
        raise InvalidValue("member.unknown_id", field=field, params={"member": member_id})
    return member


def add_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role,
    actor: str,
    member: Member | None = None,
) -> User:
    """`create_user`, audited as `actor`. The caller commits."""
    user = create_user(session, username=username, password=password, role=role, member=member)
    _record(session, actor, "user.create", "user", user.username, role=role.value)
    return user


def revoke_tokens_of(session: Session, user: User, *, kind: str | None = None) -> None:
    """End every session and token of `user` (only those of `kind` when given)."""
    query = select(ApiToken).where(ApiToken.user_id == user.id)
    if kind is not None:
        query = query.where(ApiToken.kind == kind)
    for token in session.exec(query):
        revoke_token(session, token)


_UNSET: Any = object()


def update_user(
    session: Session,
    *,
    user_id: int,
    actor: str,
    role: Role | None = None,
    active: bool | None = None,
    password: str | None = None,
    member_id: int | None = _UNSET,
) -> User:
    """Change a login (fields left out stay). Disabling it or a new password ends every
    session and token at once; a `member` login keeps a member. The caller commits."""
    target = user_by_id(session, user_id=user_id)
    changed: list[str] = []
    if role is not None:
        target.role = role
        changed.append("role")
    if active is not None:
        target.active = active
        changed.append("active")
    if member_id is not _UNSET:
        target.member_id = (
            None if member_id is None else linked_member(session, member_id=member_id).id
        )
        changed.append("member_id")
    if target.role is Role.MEMBER and target.member_id is None:
        raise InvalidValue("user.member_required", field="member_id")
    if password is not None:
        set_password(target, password)
        changed.append("password")
    if active is False or password is not None:
        revoke_tokens_of(session, target)
    session.add(target)
    _record(session, actor, "user.update", "user", target.username, fields=sorted(changed))
    return target


def tokens_of(session: Session, *, viewer: User, user_id: int | None = None) -> list[ApiToken]:
    """`viewer`'s own tokens; an admin may name another user."""
    if user_id is not None and user_id != viewer.id and viewer.role is not Role.ADMIN:
        raise Forbidden("token.others_admin_only", field="user_id")
    owner = user_id if user_id is not None else viewer.id
    return list(
        session.exec(select(ApiToken).where(ApiToken.user_id == owner).order_by(col(ApiToken.id)))
    )


def token_lifetime(expires_in_days: int | None) -> timedelta | None:
    """How long a new API token lives (None: until revoked); 1 to TOKEN_MAX_DAYS days."""
    if expires_in_days is None:
        return None
    if not 1 <= expires_in_days <= TOKEN_MAX_DAYS:
        raise InvalidValue(
            "token.days_out_of_range", field="expires_in_days", params={"max": TOKEN_MAX_DAYS}
        )
    return timedelta(days=expires_in_days)


def create_api_token(
    session: Session, *, user: User, name: str, expires_in_days: int | None, actor: str
) -> tuple[str, ApiToken]:
    """A new API token for `user`: (the secret, shown once; its row). The caller commits."""
    if not name.strip():
        raise InvalidValue("token.name_empty", field="name")
    ttl = token_lifetime(expires_in_days)
    raw, token = issue_token(session, user, name=name.strip(), kind="api", ttl=ttl)
    _record(
        session, actor, "token.create", "token", token.prefix, name=token.name, user=user.username
    )
    return raw, token


def revoke_token_by_id(session: Session, *, token_id: int, by: User, actor: str) -> ApiToken:
    """Revoke a token: `by`'s own, or anyone's for an admin. It stops working at once."""
    token = session.get(ApiToken, token_id) if 1 <= token_id <= INT32_MAX else None
    if token is None:
        raise NotFound("token.unknown_id", field="token_id", params={"token": token_id})
    if token.user_id != by.id and by.role is not Role.ADMIN:
        raise Forbidden("token.others_admin_only", field="token_id")
    revoke_token(session, token, now=datetime.now(UTC))
    _record(session, actor, "token.revoke", "token", token.prefix)
    return token


def revoke_token_by_prefix(session: Session, *, prefix: str, actor: str) -> ApiToken:
    """Revoke the one token whose secret starts with `prefix` (as the token lists show it)."""
    tokens = session.exec(select(ApiToken).where(ApiToken.prefix == prefix)).all()
    if len(tokens) != 1:
        raise NotFound("token.unknown_prefix", field="prefix", params={"prefix": prefix})
    revoke_token(session, tokens[0])
    _record(session, actor, "token.revoke", "token", prefix)
    return tokens[0]


def sign_out(session: Session, *, raw: str | None) -> None:
    """Revoke the token a request was made with (nothing when it is unknown)."""
    token = session.exec(
        select(ApiToken).where(ApiToken.token_hash == hash_token(raw or ""))
    ).first()
    if token is not None:
        revoke_token(session, token)


def _record(
    session: Session, actor: str, action: str, entity: str, entity_id: str, **detail: Any
) -> None:
    record(session, actor=actor, action=action, entity=entity, entity_id=entity_id, **detail)
