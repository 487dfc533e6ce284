"""From a stored mailbox to a working ``GmailClient``: decrypt its credentials, build their kind.

A mailbox whose credentials cannot be used raises ``GmailAuthError`` (the worker marks it
``needs_reauth`` and goes on with the others); a stored blob the secret key cannot open raises
``app.crypto.CredentialsUnreadable``, an installation problem rather than a mailbox one.
"""

from __future__ import annotations

from app.config import Settings
from app.crypto import decrypt_json
from app.mailboxes.models import Mailbox, MailboxAuthKind
from gmail_sync.client import GmailAuthError, GmailClient, GmailError, RetryPolicy
from gmail_sync.credentials import (
    CredentialsError,
    oauth_user_credentials,
    service_account_credentials,
)


def client_for_mailbox(
    mailbox: Mailbox, settings: Settings, *, retry: RetryPolicy | None = None
) -> GmailClient:
    api_url = settings.gmail_api_url
    if mailbox.auth_kind == MailboxAuthKind.EMULATOR:
        if not api_url:
            raise GmailError(
                f"mailbox {mailbox.email} is connected to the emulator, but "
                "INBOXDESK_GMAIL_API_URL is not set (e.g. http://127.0.0.1:8025/)",
                code="gmail_api_url_missing",
            )
        return GmailClient.for_emulator(mailbox.email, api_url=api_url, retry=retry)

    if mailbox.auth_kind not in (MailboxAuthKind.OAUTH, MailboxAuthKind.SERVICE_ACCOUNT) or (
        mailbox.credentials_encrypted is None
    ):
        raise GmailAuthError(
            f"mailbox {mailbox.email} has no Gmail credentials: connect it with "
            f"`inboxdesk mailbox add {mailbox.email} --oauth … | --service-account …`"
        )
    info = decrypt_json(mailbox.credentials_encrypted, settings.secret_key)
    try:
        if mailbox.auth_kind == MailboxAuthKind.OAUTH:
            credentials = oauth_user_credentials(info)
        else:
            credentials = service_account_credentials(info, mailbox.email)
    except CredentialsError as exc:
        raise GmailAuthError(f"mailbox {mailbox.email}: {exc.message}") from None
    return GmailClient(credentials, api_url=api_url, retry=retry)
