"""The Gmail API client: the only module of the product that imports ``googleapiclient``.

The unmodified google-api-python-client with its bundled (static) discovery document, so nothing is
fetched from Google to start. ``api_url`` (``INBOXDESK_GMAIL_API_URL``) sends *every* call
elsewhere, e.g. to the emulator, batches included (see ``_batch_uri``).

Failures are retried here, with exponential backoff and full jitter, exactly where Gmail's
"Resolve errors" guide says a retry helps: 429, 403 ``rateLimitExceeded`` /
``userRateLimitExceeded``, and 5xx. Inside a batch each part is judged on its own: a batch answered
200 can still carry 429 or 503 parts, and only those are sent again, in a new batch.

One ``GmailClient`` per mailbox and thread: httplib2 connections are not thread-safe.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urljoin

import google.auth.credentials
import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.discovery import build
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from app.errors import AppError
from gmail_sync.credentials import emulator_credentials

logger = logging.getLogger(__name__)

# rootUrl of the bundled gmail.v1 discovery document.
GOOGLE_API_URL = "https://gmail.googleapis.com/"
# batchPath of the same document; the batch endpoint is rootUrl + batchPath.
BATCH_PATH = "batch"
# Gmail allows 100 calls a batch but advises at most 50: larger batches trip the per-user rate
# limit (Gmail API guide "Batching requests").
BATCH_LIMIT = 50
# The largest page messages.list and history.list hand out (maxResults ≤ 500).
PAGE_SIZE = 500
HTTP_TIMEOUT_SECONDS = 60

# Gmail "Resolve errors": 403 with these reasons is a rate limit, to be retried with backoff. Other
# 403s (forbidden, dailyLimitExceeded, insufficientPermissions…) do not get better by waiting.
_RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


class GmailError(AppError):
    status_code = 502
    code = "gmail_error"

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        reason: str | None = None,
        retryable: bool = False,
        code: str | None = None,
    ) -> None:
        details = {"http_status": http_status, "reason": reason} if http_status else None
        super().__init__(message, code=code, details=details)
        self.http_status = http_status
        self.reason = reason
        self.retryable = retryable


class GmailAuthError(GmailError):
    """The mailbox's credentials no longer work (invalid_grant, 401 after a refresh): the sync puts
    the mailbox in ``needs_reauth`` and goes on with the others."""

    code = "gmail_auth_failed"


class HistoryExpired(GmailError):
    """history.list answered 404: the start historyId is older than Gmail keeps; full resync."""

    code = "gmail_history_expired"


class GmailNotFound(GmailError):
    status_code = 404
    code = "gmail_not_found"


@dataclass(frozen=True)
class HistoryPage:
    records: list[dict[str, Any]]
    history_id: int


@dataclass
class RetryPolicy:
    """How often and how long to wait: ``max_attempts`` tries in all, the n-th retry after a delay
    drawn uniformly from [0, min(max_delay, base_delay·2ⁿ)] ("full jitter", AWS Architecture Blog
    "Exponential Backoff And Jitter"), so mailboxes hitting a limit together spread out."""

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 32.0
    sleep: Callable[[float], None] = time.sleep
    # Not for security: jitter only. Injectable so tests can pin the drawn fraction.
    rand: Callable[[], float] = random.random

    def ceiling(self, retry_number: int) -> float:
        """The upper bound of the wait before retry ``retry_number`` (0 for the first retry)."""
        return min(self.max_delay, self.base_delay * 2**retry_number)

    def delay(self, retry_number: int) -> float:
        return self.rand() * self.ceiling(retry_number)


def _error_reason(content: bytes) -> str | None:
    """``error.errors[0].reason`` of Google's error JSON (else ``error.status``), if any."""
    try:
        error = json.loads(content)["error"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(error, dict):
        return None
    errors = error.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        reason = errors[0].get("reason")
        if isinstance(reason, str):
            return reason
    status = error.get("status")
    return status if isinstance(status, str) else None


def _retryable_status(status: int, reason: str | None, *, idempotent: bool) -> bool:
    if status == 429 or (status == 403 and reason in _RATE_LIMIT_REASONS):
        # Refused before any work was done: safe to repeat any call.
        return True
    # A 5xx may come after the work was done: only repeat what is harmless to do twice.
    return idempotent and status >= 500


def _from_http_error(exc: HttpError, what: str, *, idempotent: bool = True) -> GmailError:
    status = int(exc.resp.status)
    reason = _error_reason(exc.content)
    message = f"Gmail {what}: HTTP {status}" + (f" {reason}" if reason else "")
    if exc.reason and exc.reason != reason:
        message += f": {exc.reason}"
    kind: type[GmailError] = GmailError
    # The transport already refreshed the token once on 401 (google-auth-httplib2): another 401,
    # or a token lacking the scope, is only fixed by a person authorizing again.
    if status == 401 or (status == 403 and reason == "insufficientPermissions"):
        kind = GmailAuthError
    elif status == 404:
        kind = GmailNotFound
    return kind(
        message,
        http_status=status,
        reason=reason,
        retryable=_retryable_status(status, reason, idempotent=idempotent),
    )


def _from_refresh_error(exc: RefreshError, what: str) -> GmailError:
    # google-auth already retried the token endpoint's own 5xx (_client._can_retry); what is left
    # and not retryable is a refusal: invalid_grant (revoked or expired refresh token, RFC 6749
    # §5.2), unauthorized_client (delegation not granted), the emulator refusing its token.
    if exc.retryable:
        return GmailError(f"Gmail {what}: token refresh failed: {exc}", retryable=True)
    return GmailAuthError(f"Gmail {what}: credentials refused: {exc.args[0] if exc.args else exc}")


def _from_transport_error(exc: Exception, what: str, *, idempotent: bool) -> GmailError:
    # A refused connection never reached the server; a reset or timeout may have after the work.
    retryable = idempotent or isinstance(exc, ConnectionRefusedError)
    return GmailError(f"Gmail {what}: {type(exc).__name__}: {exc}", retryable=retryable)


_TRANSPORT_ERRORS = (TransportError, httplib2.HttpLib2Error, http.client.HTTPException, OSError)


def _root_url(api_url: str | None) -> str:
    # Without the trailing slash urljoin would drop the last path segment of a prefixed URL.
    root = api_url or GOOGLE_API_URL
    return root if root.endswith("/") else root + "/"


class GmailClient:
    def __init__(
        self,
        credentials: google.auth.credentials.Credentials,
        *,
        api_url: str | None = None,
        retry: RetryPolicy | None = None,
        user_id: str = "me",
    ) -> None:
        self._retry = retry or RetryPolicy()
        self._user_id = user_id
        self.root_url = _root_url(api_url)
        # Our own AuthorizedHttp rather than build(credentials=…): the 401 → refresh → re-send it
        # does is what makes a second 401 mean "re-authorize" (see _from_http_error), and
        # googleapiclient would silently pick another transport if google-auth-httplib2 were absent.
        self._http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=httplib2.Http(timeout=HTTP_TIMEOUT_SECONDS)
        )
        self._service = build(
            "gmail",
            "v1",
            http=self._http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": self.root_url} if api_url else None,
        )
        # The batch URL is NOT derived from api_endpoint: Resource.new_batch_http_request() uses
        # the discovery document's rootUrl + batchPath (googleapiclient/discovery.py,
        # Resource._add_basic_methods), i.e. always https://gmail.googleapis.com/batch, and a
        # BatchHttpRequest without batch_uri posts to the retired www.googleapis.com/batch
        # (googleapiclient/http.py, _LEGACY_BATCH_URI). So we build BatchHttpRequest ourselves
        # with the same path under the redirected root.
        self.batch_uri = urljoin(self.root_url, BATCH_PATH)
        users = self._service.users()
        self._users = users
        self._messages = users.messages()
        self._labels = users.labels()
        self._threads = users.threads()
        self._history = users.history()

    @classmethod
    def for_emulator(
        cls, address: str, *, api_url: str, retry: RetryPolicy | None = None
    ) -> GmailClient:
        return cls(emulator_credentials(address), api_url=api_url, retry=retry)

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> GmailClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- Gmail calls -------------------------------------------------------------------------

    def get_profile(self) -> dict[str, Any]:
        return self._execute(self._users.getProfile(userId=self._user_id), "users.getProfile")

    def list_labels(self) -> list[dict[str, Any]]:
        response = self._execute(self._labels.list(userId=self._user_id), "labels.list")
        return list(response.get("labels", []))

    def create_label(
        self, name: str, *, background: str | None = None, text: str | None = None
    ) -> dict[str, Any]:
        """Create a label; if Gmail answers 409 (it exists), return the existing one."""
        body: dict[str, Any] = {
            "name": name,
            "labelListVisibility": "labelShow",
            "messageListVisibility": "show",
        }
        if background or text:
            if not (background and text):
                # Gmail rejects a color with only one of the two (Label.color reference).
                raise ValueError("a label color needs both background and text")
            body["color"] = {"backgroundColor": background, "textColor": text}
        try:
            return self._execute(
                self._labels.create(userId=self._user_id, body=body), "labels.create"
            )
        except GmailError as exc:
            if exc.http_status != 409:
                raise
            # Gmail compares label names case-insensitively when it reports the conflict.
            for label in self.list_labels():
                if str(label.get("name", "")).casefold() == name.casefold():
                    return label
            raise

    def list_message_ids(
        self,
        *,
        query: str | None = None,
        label_ids: Sequence[str] = (),
        max_results: int | None = None,
    ) -> list[tuple[str, str]]:
        """(id, threadId) of every matching message, newest first, across all pages."""
        found: list[tuple[str, str]] = []
        page_token: str | None = None
        while max_results is None or len(found) < max_results:
            params: dict[str, Any] = {"userId": self._user_id, "maxResults": PAGE_SIZE}
            if max_results is not None:
                params["maxResults"] = min(PAGE_SIZE, max_results - len(found))
            if query:
                params["q"] = query
            if label_ids:
                params["labelIds"] = list(label_ids)
            if page_token:
                params["pageToken"] = page_token
            response = self._execute(self._messages.list(**params), "messages.list")
            found.extend((m["id"], m["threadId"]) for m in response.get("messages", []))
            page_token = response.get("nextPageToken")
            if not page_token:
                break
        return found if max_results is None else found[:max_results]

    def search_message_ids(self, query: str) -> list[str]:
        return [message_id for message_id, _thread in self.list_message_ids(query=query)]

    def list_history(
        self,
        start_history_id: int,
        *,
        history_types: Sequence[str] = ("messageAdded", "labelAdded", "labelRemoved"),
    ) -> tuple[list[dict[str, Any]], int]:
        """All history records after ``start_history_id`` and the mailbox's latest historyId."""
        records: list[dict[str, Any]] = []
        latest = start_history_id
        for page in self.iter_history(start_history_id, history_types=history_types):
            records.extend(page.records)
            latest = page.history_id
        return records, latest

    def iter_history(
        self,
        start_history_id: int,
        *,
        history_types: Sequence[str] = ("messageAdded", "labelAdded", "labelRemoved"),
    ) -> Iterator[HistoryPage]:
        """The history records after ``start_history_id``, a page at a time: a long backlog is
        read without holding every record at once. Each page carries the mailbox's latest
        historyId as Gmail reported it with that page.

        404 means the start id is older than Gmail keeps (Gmail "Synchronizing clients": "perform
        a full sync") → ``HistoryExpired``.
        """
        latest = start_history_id
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {
                "userId": self._user_id,
                "startHistoryId": str(start_history_id),
                "historyTypes": list(history_types),
                "maxResults": PAGE_SIZE,
            }
            if page_token:
                params["pageToken"] = page_token
            try:
                response = self._execute(self._history.list(**params), "history.list")
            except GmailNotFound as exc:
                raise HistoryExpired(
                    f"history after {start_history_id} is no longer available: full sync needed",
                    http_status=404,
                    reason=exc.reason,
                ) from exc
            if "historyId" in response:
                latest = int(response["historyId"])
            yield HistoryPage(records=response.get("history", []), history_id=latest)
            page_token = response.get("nextPageToken")
            if not page_token:
                return

    def get_messages(
        self, ids: Sequence[str], *, format: str = "raw"
    ) -> dict[str, dict[str, Any] | None]:
        """messages.get for each id, ≤ 50 to a batch; a message gone (404) maps to None."""
        unique = list(dict.fromkeys(ids))
        results: dict[str, dict[str, Any] | None] = {}
        for start in range(0, len(unique), BATCH_LIMIT):
            outcomes = self._batch(
                unique[start : start + BATCH_LIMIT],
                lambda message_id: self._messages.get(
                    userId=self._user_id, id=message_id, format=format
                ),
                "messages.get",
            )
            for message_id, outcome in outcomes.items():
                if isinstance(outcome, GmailError):
                    raise outcome
                results[message_id] = outcome
        return results

    def modify_threads(
        self, changes: dict[str, tuple[Sequence[str], Sequence[str]]]
    ) -> dict[str, dict[str, Any] | GmailError | None]:
        """threads.modify for each thread id → (label ids to add, to remove), ≤ 50 to a batch
        (same quota as one by one, a fraction of the round trips). Each thread maps to Gmail's
        answer, None if the thread is gone (404), or the error Gmail kept giving for it."""
        results: dict[str, dict[str, Any] | GmailError | None] = {}
        ids = list(changes)
        for start in range(0, len(ids), BATCH_LIMIT):
            results.update(
                self._batch(
                    ids[start : start + BATCH_LIMIT],
                    lambda thread_id: self._threads.modify(
                        userId=self._user_id,
                        id=thread_id,
                        body={
                            "addLabelIds": list(changes[thread_id][0]),
                            "removeLabelIds": list(changes[thread_id][1]),
                        },
                    ),
                    "threads.modify",
                )
            )
        return results

    def get_thread_label_ids(self, thread_id: str) -> set[str]:
        """A thread's labels: the union of its messages' (threads.get, format=minimal)."""
        request = self._threads.get(userId=self._user_id, id=thread_id, format="minimal")
        thread = self._execute(request, "threads.get")
        return {label for m in thread.get("messages", []) for label in m.get("labelIds", [])}

    def modify_thread(
        self, thread_id: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> dict[str, Any]:
        body = {"addLabelIds": list(add), "removeLabelIds": list(remove)}
        request = self._threads.modify(userId=self._user_id, id=thread_id, body=body)
        # Idempotent (label sets), so a 5xx is retried.
        return self._execute(request, "threads.modify")

    def send_raw(self, raw: bytes, *, thread_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"raw": _b64url(raw)}
        if thread_id:
            body["threadId"] = thread_id
        request = self._messages.send(userId=self._user_id, body=body)
        # Not idempotent: after a 5xx the mail may be out. The outbox decides, after looking for
        # the Message-ID in Sent (search_message_ids), whether to send again.
        return self._execute(request, "messages.send", idempotent=False)

    def import_raw(
        self,
        raw: bytes,
        *,
        label_ids: Sequence[str] = ("INBOX", "UNREAD"),
        thread_id: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"raw": _b64url(raw), "labelIds": list(label_ids)}
        if thread_id:
            body["threadId"] = thread_id
        request = self._messages.import_(userId=self._user_id, body=body)
        return self._execute(request, "messages.import", idempotent=False)

    # --- retries -----------------------------------------------------------------------------

    def _execute(self, request: HttpRequest, what: str, *, idempotent: bool = True) -> Any:
        attempt = 0
        while True:
            try:
                # num_retries=0: the library's own retry (rand()·2ⁿ, no cap, no injectable
                # clock, nothing for batch parts) is replaced by ours.
                return request.execute(num_retries=0)
            except HttpError as exc:
                error = _from_http_error(exc, what, idempotent=idempotent)
                cause: Exception = exc
            except RefreshError as exc:
                error = _from_refresh_error(exc, what)
                cause = exc
            except _TRANSPORT_ERRORS as exc:
                error = _from_transport_error(exc, what, idempotent=idempotent)
                cause = exc
            attempt += 1
            if not error.retryable or attempt >= self._retry.max_attempts:
                raise error from cause
            self._wait(attempt - 1, what, error)

    def _batch(
        self, keys: list[str], make: Callable[[str], HttpRequest], method: str
    ) -> dict[str, dict[str, Any] | GmailError | None]:
        """One batch of idempotent calls, one per key: each key maps to its answer, None for a
        404, or its non-retryable error. Retryable failures — the whole batch's, or a part's
        (a 200 batch can carry a 429 part) — are retried, only the parts that need it."""
        results: dict[str, dict[str, Any] | GmailError | None] = {}
        pending = keys
        attempt = 0
        while pending:
            outcomes: dict[str, Any] = {}
            batch = BatchHttpRequest(callback=partial(_collect, outcomes), batch_uri=self.batch_uri)
            for key in pending:
                batch.add(make(key), request_id=key)
            error: GmailError | None = None
            retry: list[str] = []
            try:
                batch.execute()
            except HttpError as exc:  # the batch request itself failed: all parts again
                error, retry = _from_http_error(exc, "batch"), pending
            except RefreshError as exc:
                error, retry = _from_refresh_error(exc, "batch"), pending
            except _TRANSPORT_ERRORS as exc:
                error, retry = _from_transport_error(exc, "batch", idempotent=True), pending
            except (BatchError, KeyError) as exc:
                # A malformed multipart answer, or one missing a part (the library's KeyError on
                # its response map): a server glitch, and the calls are safe to repeat.
                error = GmailError(f"Gmail batch: malformed answer: {exc!r}", retryable=True)
                retry = pending
            else:
                for key in pending:
                    outcome = outcomes[key]
                    if not isinstance(outcome, HttpError):
                        results[key] = outcome
                        continue
                    part_error = _from_http_error(outcome, method)
                    if isinstance(part_error, GmailNotFound):
                        results[key] = None  # deleted meanwhile
                    elif part_error.retryable:
                        retry.append(key)
                        error = part_error
                    else:
                        results[key] = part_error
            if not retry or error is None:
                break
            attempt += 1
            if not error.retryable or attempt >= self._retry.max_attempts:
                raise error
            self._wait(attempt - 1, f"batch of {len(retry)} {method}", error)
            pending = retry
        return results

    def _wait(self, retry_number: int, what: str, error: GmailError) -> None:
        delay = self._retry.delay(retry_number)
        logger.warning(
            "%s failed (%s); retry %d of %d in %.2f s",
            what,
            error.reason or error.http_status or error.message,
            retry_number + 1,
            self._retry.max_attempts - 1,
            delay,
        )
        self._retry.sleep(delay)


def _collect(
    outcomes: dict[str, Any], request_id: str, response: Any, exception: Exception | None
) -> None:
    """A batch callback: each part's result, or its HttpError."""
    outcomes[request_id] = exception if exception is not None else response


def _b64url(raw: bytes) -> str:
    # Message.raw is "base64url encoded" (RFC 4648 §5); Gmail accepts it padded.
    return base64.urlsafe_b64encode(raw).decode("ascii")
