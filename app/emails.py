"""E-mail address normalisation shared by every domain that keys on an address."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from app.errors import ValidationFailed


def normalize_email(address: str) -> str:
    """Lower-case and syntax-check an address.

    The local part is case-sensitive in theory (RFC 5321 §2.4) but no real mail system treats it
    so, and Gmail ignores case entirely; one customer must not become two because of a capital.
    """
    try:
        # test_environment admits the reserved `.test` domain (RFC 2606) used by demos and tests.
        result = validate_email(address.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValidationFailed(f"invalid e-mail address {address!r}: {exc}") from exc
    return result.normalized.lower()
