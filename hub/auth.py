"""Who may use the API and the pages: argon2 passwords, revocable bearer tokens, login lockout.

Only a token's SHA-256 is stored; its secret is shown once. A web login is a token of kind
`web` kept in an HttpOnly cookie, so logging out and revoking work the same way for both.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import Session, select

from hub.models import ApiToken, Member, Role, User

TOKEN_PREFIX = "atl_"
MIN_PASSWORD_LENGTH = 10
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
WEB_SESSION = timedelta(hours=12)
# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_hasher = PasswordHasher()
# Checked against when the username is unknown, so a login takes as long either way and
# does not tell which usernames exist.
_DUMMY_HASH = _hasher.hash("not-a-password-" + secrets.token_hex(8))


class AuthError(ValueError):
    """A person's mistake in a user or token command: the message says what to fix."""


class LoginRefused(Exception):
    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
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
    username = username.strip().lower()
    if not username or len(username) > 80 or any(c.isspace() for c in username):
        raise AuthError("the username must be 1 to 80 characters without spaces")
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise AuthError(f"a user {username!r} already exists")
    if role is Role.MEMBER and member is None:
        raise AuthError("a `member` user must be linked to a member (give the member's email)")
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
