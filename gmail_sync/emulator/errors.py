"""Errors in the shape Google APIs answer them, so clients parse them as they parse Gmail's.

Google's JSON error body (https://cloud.google.com/apis/design/errors, the "v1 error format" of
the discovery document's ``$.xgafv``): ``{"error": {"code", "message", "errors": [{"message",
"domain", "reason"}], "status"}}``. googleapiclient's ``HttpError`` reads ``error.message`` and
``error.errors[0].reason``; its retry logic reads the reason of a 403 (``rateLimitExceeded`` /
``userRateLimitExceeded`` are retried, others are not).
"""

from __future__ import annotations

from typing import Any

# google.rpc.Code names for the HTTP statuses we answer with.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GmailApiError(Exception):
    """An answer other than 2xx; rendered by the app's handler and by the batch endpoint."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str,
        domain: str = "global",
        status: str | None = None,
        detail_message: str | None = None,
        location: str | None = None,
        location_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.domain = domain
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")
        self.detail_message = detail_message or message
        self.location = location
        self.location_type = location_type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {
            "message": self.detail_message,
            "domain": self.domain,
            "reason": self.reason,
        }
        if self.location:
            detail["location"] = self.location
            detail["locationType"] = self.location_type or "parameter"
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [detail],
                "status": self.status,
            }
        }


def not_found() -> GmailApiError:
    # Gmail says exactly this for an unknown message, thread, label, draft or stale history id.
    return GmailApiError(404, "Requested entity was not found.", reason="notFound")


def invalid_argument(message: str, *, location: str | None = None) -> GmailApiError:
    return GmailApiError(400, message, reason="invalidArgument", location=location)


def bad_request(message: str) -> GmailApiError:
    return GmailApiError(400, message, reason="badRequest")


def failed_precondition(message: str) -> GmailApiError:
    return GmailApiError(400, message, reason="failedPrecondition", status="FAILED_PRECONDITION")


def unauthenticated() -> GmailApiError:
    # What Google answers for an unknown or expired access token; the WWW-Authenticate header
    # (RFC 6750 §3) is what makes google-auth-httplib2 try one refresh before giving up.
    return GmailApiError(
        401,
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        reason="authError",
        detail_message="Invalid Credentials",
        location="Authorization",
        location_type="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
    )


def delegation_denied(user_id: str) -> GmailApiError:
    # A token for one mailbox naming another userId: Gmail refuses with this 403.
    return GmailApiError(403, f"Delegation denied for {user_id}", reason="forbidden")


def label_conflict() -> GmailApiError:
    return GmailApiError(409, "Label name exists or conflicts", reason="duplicate")


def quota_exceeded() -> GmailApiError:
    # Per-user limit of 15,000 units a minute (developers.google.com/gmail/api/reference/quota):
    # Google answers 429 RESOURCE_EXHAUSTED, reason rateLimitExceeded, domain usageLimits.
    message = (
        "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of "
        "service 'gmail.googleapis.com' for consumer 'project_number:0'."
    )
    return GmailApiError(429, message, reason="rateLimitExceeded", domain="usageLimits")


def injected(status: int) -> GmailApiError:
    """The body Gmail gives with each status the fault injector can produce."""
    if status == 429:
        return GmailApiError(
            429,
            "Too many concurrent requests for user.",
            reason="rateLimitExceeded",
            domain="usageLimits",
        )
    if status == 403:
        return GmailApiError(
            403,
            "User-rate limit exceeded.",
            reason="userRateLimitExceeded",
            domain="usageLimits",
        )
    if status == 500:
        return GmailApiError(500, "Internal error encountered.", reason="backendError")
    if status == 503:
        return GmailApiError(503, "The service is currently unavailable.", reason="backendError")
    if status == 504:
        return GmailApiError(
            504, "Deadline expired before operation could complete.", reason="backendError"
        )
    return GmailApiError(status, "Backend Error", reason="backendError")


INJECTABLE_STATUSES = frozenset({403, 429, 500, 502, 503, 504})
