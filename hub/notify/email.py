"""Email over SMTP (implicit TLS, STARTTLS or plain on loopback), with authentication."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from pydantic import SecretStr

from hub.notify.messages import Rendered


class DeliveryError(Exception):
    """A channel did not take a message. Permanent ones are not retried (a refused address)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str  # "tls" (implicit, port 465), "starttls" (port 587) or "none"
    sender: str
    username: str | None = None
    password: SecretStr | None = None  # never logged: SecretStr prints as '**********'
    ca_file: Path | None = None  # the server's CA when it is not in the system's store
    timeout_s: float = 30.0

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        return context


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "image/jpeg"
    data: bytes


def build_message(
    config: SmtpConfig,
    *,
    to: str,
    rendered: Rendered,
    message_id: str,
    attachments: tuple[Attachment, ...] = (),
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = config.sender
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    # The outbox id, the same on every attempt: a resend after a crash is recognisable.
    message["Message-ID"] = f"<{message_id}@atelier.invalid>"
    message["X-Atelier-Notification"] = message_id
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    for item in attachments:
        maintype, _, subtype = item.content_type.partition("/")
        message.add_attachment(
            item.data, maintype=maintype, subtype=subtype, filename=item.filename
        )
    return message


def send(config: SmtpConfig, message: EmailMessage) -> None:
    """Hand the message to the server; DeliveryError says whether to try again."""
    try:
        client: smtplib.SMTP
        if config.security == "tls":
            client = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout_s, context=config._tls_context()
            )
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        with client:
            if config.security == "starttls":
                client.starttls(context=config._tls_context())
            if config.username:
                password = config.password.get_secret_value() if config.password else ""
                client.login(config.username, password)
            client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(
            f"the SMTP server refused the address: {exc.recipients}", permanent=True
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        # Wrong credentials: retried (an admin fixes them), the password itself never shown.
        raise DeliveryError(f"SMTP authentication failed ({exc.smtp_code})") from None
    except smtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.smtp_code < 600
        raise DeliveryError(
            f"SMTP server answered {exc.smtp_code} {exc.smtp_error!r}", permanent=permanent
        ) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP: {type(exc).__name__}: {exc}") from None
