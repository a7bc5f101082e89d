"""Where the accounts service used to be: `hub.services.accounts` now (issue 17).

Kept so that code written against the old path (tests, benchmarks, branches being merged)
still imports; new code imports `hub.services.accounts`.
"""

from __future__ import annotations

from hub.services.accounts import (
    LOCKOUT,
    MAX_FAILED_LOGINS,
    MIN_PASSWORD_LENGTH,
    TOKEN_PREFIX,
    WEB_SESSION,
    FailureWindow,
    LoginRefused,
    LoginResult,
    create_user,
    hash_password,
    hash_token,
    issue_token,
    login,
    revoke_token,
    set_password,
    user_for_token,
)

__all__ = [
    "LOCKOUT",
    "MAX_FAILED_LOGINS",
    "MIN_PASSWORD_LENGTH",
    "TOKEN_PREFIX",
    "WEB_SESSION",
    "FailureWindow",
    "LoginRefused",
    "LoginResult",
    "create_user",
    "hash_password",
    "hash_token",
    "issue_token",
    "login",
    "revoke_token",
    "set_password",
    "user_for_token",
]
