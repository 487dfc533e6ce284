"""Sending acknowledgements exactly once: the MIME we build, then the real sync and the real sender
against the emulator over HTTP (the unmodified Gmail client), through Gmail's refusals, a crash
between sending and recording, a lost lease and a revoked authorization."""

from __future__ import annotations

import email
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.header import decode_header, make_header
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest
from sqlalchemy import select, update

from app.acknowledgements.compose import load_signing_key, ticket_of_message_id
from app.db.base import utcnow
from app.db.session import Database
from app.mailboxes import service as mailboxes
from app.mailboxes.models import MailboxAuthKind
from app.messages.models import Direction, Message
from app.outbox.models import OutboxMessage, OutboxStatus
from app.tickets.models import Status, Ticket
from gmail_sync.client import GmailAuthError, GmailClient, GmailError, RetryPolicy
from gmail_sync.emulator.mailbox import StoredMessage
from gmail_sync.outgoing import build_mime
from gmail_sync.parse import parse_message
from gmail_sync.sender import OutboxSender, SendReport, backoff
from gmail_sync.sync import LeaseLost, MailboxSync
from gmail_sync.worker import Worker
from labels.taxonomy import Taxonomy
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
    mail,
)

SEND = "gmail.users.messages.send"
LIST = "gmail.users.messages.list"
NO_SLEEP = RetryPolicy(sleep=lambda _s: None)
CUSTOMER = "ann@customer.test"


# -- build_mime --------------------------------------------------------------------------------
def _row(**values: Any) -> OutboxMessage:
    fields: dict[str, Any] = {
        "ticket_id": 1,
        "mailbox_id": 1,
        "kind": "ack",
        "to_address": "ivan@pochta.test",
        "subject": "Re: Не пришёл заказ № 4411 [#1042]",
        "body": "Здравствуйте, Иван!\n\nОтветим до 11:00, понедельник, 23 ноября.\n",
        "is_html": False,
        "in_reply_to": "<q2@pochta.test>",
        "references": "<q1@pochta.test> <q2@pochta.test>",
        "rfc822_message_id": "<ack.1042.abcdefghijklmnopqrstuvwx@shop.test>",
        "gmail_thread_id": None,
    }
    fields.update(values)
    return OutboxMessage(**fields)


WHEN = datetime(2025, 11, 21, 16, 5, 0, tzinfo=UTC)
SHOP = 'Служба поддержки "Ромашка", ООО'


def test_mime_round_trips_through_our_parser_and_the_stdlib() -> None:
    """Non-ASCII name, subject and body come back exactly from our parser and the standard
    library; the message is 7-bit with lines of at most 78 characters; our headers are there."""
    raw = build_mime(_row(), from_address="support@shop.test", from_name=SHOP, date=WHEN)
    assert raw.isascii()
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF line ends only (RFC 5322 §2.1)

    parsed = parse_message(raw)
    assert parsed.defects == ()
    assert parsed.subject == "Re: Не пришёл заказ № 4411 [#1042]"
    assert (parsed.from_name, parsed.from_address) == (SHOP, "support@shop.test")
    assert parsed.to == ("ivan@pochta.test",)
    assert parsed.message_id == "ack.1042.abcdefghijklmnopqrstuvwx@shop.test"
    assert parsed.in_reply_to == ("q2@pochta.test",)
    assert parsed.references == ("q1@pochta.test", "q2@pochta.test")
    assert parsed.date == WHEN
    assert parsed.text == "Здравствуйте, Иван!\n\nОтветим до 11:00, понедельник, 23 ноября."

    std = email.message_from_bytes(raw, policy=policy.default)
    assert std.defects == []
    assert str(std["Subject"]) == "Re: Не пришёл заказ № 4411 [#1042]"
    # RFC 2047's decoder (not the header registry's address parser, which puts a space between
    # adjacent encoded words of a display name — a CPython quirk; §6.2 says to drop it).
    assert str(make_header(decode_header(str(email.message_from_bytes(raw)["From"])))) == (
        f"{SHOP} <support@shop.test>"
    )
    assert std["From"].addresses[0].addr_spec == "support@shop.test"
    assert std["Auto-Submitted"] == "auto-replied"  # RFC 3834 §5
    assert std["X-Auto-Response-Suppress"] == "All"
    assert std["MIME-Version"] == "1.0"
    assert std["Message-ID"] == "<ack.1042.abcdefghijklmnopqrstuvwx@shop.test>"
    assert parsedate_to_datetime(std["Date"]) == WHEN
    assert std.get_content_type() == "text/plain"
    assert std.get_content_charset() == "utf-8"
    assert std["Content-Transfer-Encoding"] in ("base64", "quoted-printable")
    assert std.get_content().replace("\r\n", "\n").rstrip("\n") == parsed.text


def test_mime_ascii_html_and_long_lines() -> None:
    """English text stays readable (7bit, or quoted-printable for long lines); HTML is sent as
    text/html; a line over 78 characters is encoded, not cut."""
    long_line = "We will reply by Monday, November 23, 11:00 AM. " * 4
    plain = build_mime(
        _row(subject="Re: Lost parcel [#1001]", body=f"Hello!\n{long_line}"),
        from_address="support@shop.test",
        from_name="Shop Support",
        date=WHEN,
    )
    std = email.message_from_bytes(plain, policy=policy.default)
    assert std["Content-Transfer-Encoding"] == "quoted-printable"
    assert std["From"] == "Shop Support <support@shop.test>"
    assert parse_message(plain).text == f"Hello!\n{long_line}".strip()
    assert all(len(line) <= 78 for line in plain.split(b"\r\n"))

    html = build_mime(
        _row(body="<p>Hello, <b>Zoë</b>!</p>", is_html=True),
        from_address="support@shop.test",
        from_name="Shop Support",
        date=WHEN,
    )
    parsed = parse_message(html)
    assert parsed.part_types >= {"text/html"}
    assert parsed.html is not None
    assert "<b>Zoë</b>" in parsed.html
    assert parsed.text == "Hello, Zoë!"


def test_mime_headers_cannot_be_injected_and_threading_is_completed() -> None:
    """A line break in a stored subject does not start a new header; the parent's id joins
    References when missing (RFC 5322 §3.6.4) and bare ids get their angle brackets; an IDN
    domain is sent in its ASCII form; a recipient that is not an address is refused."""
    raw = build_mime(
        _row(
            subject="Help\r\nBcc: victim@example.com",
            in_reply_to="q9@c.test",
            references="q1@c.test",
        ),
        from_address="support@магазин.рф",
        from_name="Support",
        date=WHEN,
    )
    std = email.message_from_bytes(raw, policy=policy.default)
    assert std["Bcc"] is None
    assert std["Subject"] == "Help Bcc: victim@example.com"
    assert std["In-Reply-To"] == "<q9@c.test>"
    assert std["References"] == "<q1@c.test> <q9@c.test>"
    assert std["From"].addresses[0].domain == "xn--80aairftm.xn--p1ai"

    many = " ".join(f"<ref-{i:03d}-0123456789abcdef@mail.gmail.com>" for i in range(20))
    raw = build_mime(_row(references=many), from_address="s@shop.test", from_name="S")
    assert len(parse_message(raw).references) == 21  # the 20 and the parent, folded, intact

    for bad in ("nobody", "@shop.test", "ann@"):
        with pytest.raises(ValueError, match="not an email address"):
            build_mime(_row(to_address=bad), from_address="s@shop.test", from_name="S")


# -- the sender against the emulator -----------------------------------------------------------
class Clock:
    """The sender's clock, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Crash(BaseException):
    """The process dies here (a BaseException: nothing on the way catches it)."""


class DiesAfterSending(GmailClient):
    """The real client, in a process that dies the moment Gmail has accepted the message."""

    def send_raw(self, raw: bytes, *, thread_id: str | None = None) -> dict[str, Any]:
        super().send_raw(raw, thread_id=thread_id)
        raise Crash


def _client(emulator: Emulator, address: str = MAILBOX) -> GmailClient:
    return GmailClient.for_emulator(address, api_url=emulator.url, retry=NO_SLEEP)


def _mailbox(db: Database) -> int:
    with db.unit_of_work() as s:
        box = mailboxes.create_mailbox(
            s, email=MAILBOX, name="Shop Support", auth_kind=MailboxAuthKind.EMULATOR
        )
        return box.id


def _sync(db: Database, emulator: Emulator, box: int) -> None:
    with _client(emulator) as client:
        MailboxSync(db, box, client, taxonomy=Taxonomy()).run()


def _customer_writes(
    emulator: Emulator, subject: str, *, sender: str = CUSTOMER, message_id: str | None = None
) -> dict[str, Any]:
    now = format_datetime(datetime.now(UTC))
    mid = message_id or f"{uuid.uuid4().hex}@customer.test"
    return emulator.import_raw(mail(subject, message_id=mid, sender=sender, date=now))


def _sent(emulator: Emulator, address: str = MAILBOX) -> list[StoredMessage]:
    with emulator.state.lock:
        box = emulator.state.mailbox(address)
        return [m for m in box.messages.values() if "SENT" in m.label_ids]


def _rows(db: Database) -> list[OutboxMessage]:
    with db.session() as s:
        return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def _calls(emulator: Emulator, method: str) -> int:
    return int(emulator.state.stats()["methods"].get(method, {}).get("calls", 0))


def _sender(
    db: Database, emulator: Emulator, box: int, clock: Clock, **kwargs: Any
) -> Callable[..., SendReport]:
    def send(client: GmailClient | None = None) -> SendReport:
        with client or _client(emulator) as gmail:
            return OutboxSender(db, box, gmail, now=clock, **kwargs).send_pending()

    return send


@pytest.fixture
def ready(db: Database, emulator: Emulator) -> int:
    """A mailbox synced once (its cursor set), then one new customer mail synced: one ticket,
    its acknowledgement queued."""
    box = _mailbox(db)
    _sync(db, emulator, box)
    _customer_writes(emulator, "Order 1 lost", message_id="a1@customer.test")
    _sync(db, emulator, box)
    (row,) = _rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)
    return box


def test_new_customer_mail_gets_exactly_one_ack_in_its_thread(
    db: Database, emulator: Emulator
) -> None:
    """The worker's pass sends one acknowledgement: in the customer's Gmail thread, with our
    headers, subject "Re: … [#1001]" and the row's signed Message-ID; the next pass reads it back
    as AUTO mail — not the first response — and sends nothing more."""
    _mailbox(db)
    worker = Worker(
        db,
        lambda mailbox: _client(emulator, mailbox.email),
        taxonomy=Taxonomy(),
        lease_seconds=60,
    )
    (first,) = worker.run_once()
    assert (first.tickets_created, first.acks_sent) == (0, 0)
    question = _customer_writes(emulator, "Order 1 lost", message_id="a1@customer.test")

    (report,) = worker.run_once()
    assert (report.tickets_created, report.acks_sent) == (1, 1)
    (sent,) = _sent(emulator)
    assert sent.thread_id == question["threadId"]
    (row,) = _rows(db)
    assert row.status == OutboxStatus.SENT
    assert (row.gmail_message_id, row.attempts) == (sent.id, 1)
    assert row.sent_at is not None
    assert row.next_attempt_at is None

    headers = email.message_from_bytes(sent.raw, policy=policy.default)
    assert headers["Subject"] == "Re: Order 1 lost [#1001]"
    assert headers["From"] == "Shop Support <support@shop.test>"
    assert headers["To"] == CUSTOMER
    assert headers["Auto-Submitted"] == "auto-replied"
    assert headers["X-Auto-Response-Suppress"] == "All"
    assert headers["In-Reply-To"] == "<a1@customer.test>"
    assert headers["References"] == "<a1@customer.test>"
    assert headers["Message-ID"] == row.rfc822_message_id
    with db.session() as s:
        load_signing_key(s)
        ticket = s.scalars(select(Ticket)).one()
    assert ticket.number == 1001
    assert ticket_of_message_id(headers["Message-ID"]) == ticket.id

    # The next pass syncs our acknowledgement back: AUTO, on the ticket, not a first response.
    (echo,) = worker.run_once()
    assert (echo.fetched, echo.tickets_created, echo.acks_sent) == (1, 0, 0)
    with db.session() as s:
        ack = s.scalars(select(Message).where(Message.gmail_message_id == sent.id)).one()
        ticket = s.scalars(select(Ticket)).one()
    assert (ack.direction, ack.ticket_id) == (Direction.AUTO, ticket.id)
    assert ticket.first_response_at is None
    assert ticket.status == Status.NEW
    (idle,) = worker.run_once()
    assert (idle.fetched, idle.acks_sent) == (0, 0)
    assert len(_sent(emulator)) == 1


@pytest.mark.parametrize(
    ("status", "times", "after_work"),
    [(500, 1, False), (503, 1, True), (429, 6, False)],
    ids=["500-nothing-sent", "503-after-gmail-sent-it", "429-client-retries-exhausted"],
)
def test_retryable_gmail_error_is_retried_later_and_the_ack_goes_out_once(
    db: Database,
    emulator: Emulator,
    ready: int,
    status: int,
    times: int,
    after_work: bool,
) -> None:
    """Gmail refuses (or sends and then answers 5xx): the row stays pending with a backoff; a
    pass before it is due does nothing; the next attempt looks in the mailbox first — and sends
    only if the earlier attempt did not — so the customer gets one acknowledgement."""
    clock = Clock()
    send = _sender(db, emulator, ready, clock)
    emulator.state.fail_method(SEND, status, times=times, after_work=after_work)

    report = send()
    assert (report.sent, report.deferred) == (0, 1)
    (row,) = _rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 1)
    assert row.last_error is not None
    assert f"HTTP {status}" in row.last_error
    assert row.next_attempt_at == clock.now + backoff(1)
    assert len(_sent(emulator)) == int(after_work)

    assert send() == SendReport(mailbox=MAILBOX)  # not due yet
    searches = _calls(emulator, LIST)
    clock.advance(backoff(1))
    report = send()
    assert _calls(emulator, LIST) == searches + 1  # rfc822msgid: first
    assert (report.sent, report.recovered) == ((0, 1) if after_work else (1, 0))
    (sent,) = _sent(emulator)
    (row,) = _rows(db)
    assert (row.status, row.attempts, row.gmail_message_id) == (OutboxStatus.SENT, 2, sent.id)
    assert send() == SendReport(mailbox=MAILBOX)
    assert len(_sent(emulator)) == 1


def test_crash_between_sending_and_recording_is_found_in_sent(
    db: Database, emulator: Emulator, ready: int
) -> None:
    """The process dies after Gmail accepted the acknowledgement and before the row says so: the
    row stays pending (attempt 1) and blocked for ``resend_after``; then the next pass finds the
    message by ``rfc822msgid:`` and records it instead of sending it again."""
    clock = Clock()
    send = _sender(db, emulator, ready, clock, resend_after=30)
    with pytest.raises(Crash):
        send(DiesAfterSending.for_emulator(MAILBOX, api_url=emulator.url, retry=NO_SLEEP))
    (out,) = _sent(emulator)
    (row,) = _rows(db)
    assert (row.status, row.attempts, row.gmail_message_id) == (OutboxStatus.PENDING, 1, None)
    assert row.next_attempt_at == clock.now + timedelta(seconds=30)

    clock.advance(timedelta(seconds=29))
    assert send() == SendReport(mailbox=MAILBOX)  # the dead attempt's block still holds
    clock.advance(timedelta(seconds=1))
    sends = _calls(emulator, SEND)
    report = send()
    assert (report.sent, report.recovered) == (0, 1)
    assert _calls(emulator, SEND) == sends
    (row,) = _rows(db)
    assert (row.status, row.attempts, row.gmail_message_id) == (OutboxStatus.SENT, 2, out.id)
    assert [m.id for m in _sent(emulator)] == [out.id]


def test_permanent_refusals_fail_the_row_and_attempts_run_out(
    db: Database, emulator: Emulator, ready: int
) -> None:
    """Gmail's 400 (an address it will not send to) fails the row with Gmail's message, and so
    does a recipient no message can carry; a row still unsent after ``max_attempts`` is given
    up. Nothing reaches Sent and later passes leave failed rows alone."""
    clock = Clock()
    send = _sender(db, emulator, ready, clock)
    with db.unit_of_work() as s:
        s.execute(update(OutboxMessage).values(to_address="ann smith@customer.test"))
    report = send()
    assert (report.failed, report.sent) == (1, 0)
    (row,) = _rows(db)
    assert row.status == OutboxStatus.FAILED
    assert row.last_error is not None
    assert "HTTP 400" in row.last_error
    assert "Invalid To header" in row.last_error

    with db.unit_of_work() as s:
        s.execute(
            update(OutboxMessage).values(
                status=OutboxStatus.PENDING, to_address="nobody", attempts=0
            )
        )
    assert send().failed == 1
    (row,) = _rows(db)
    assert row.status == OutboxStatus.FAILED
    assert row.last_error is not None
    assert "cannot build the message" in row.last_error

    with db.unit_of_work() as s:
        s.execute(
            update(OutboxMessage).values(
                status=OutboxStatus.PENDING, to_address=CUSTOMER, attempts=0
            )
        )
    emulator.state.fail_method(SEND, 503)
    give_up = _sender(db, emulator, ready, clock, max_attempts=1)
    assert give_up().deferred == 1
    clock.advance(backoff(1))
    assert give_up().failed == 1
    (row,) = _rows(db)
    assert (row.status, row.last_error) == (OutboxStatus.FAILED, "gave up after 1 attempts")
    clock.advance(timedelta(days=1))
    assert send() == SendReport(mailbox=MAILBOX)
    assert _sent(emulator) == []


def test_no_lease_or_no_authorization_sends_nothing(
    db: Database, emulator: Emulator, ready: int
) -> None:
    """A worker that lost the mailbox's lease sends nothing and claims nothing, and one that
    loses it after its claim sends nothing either; a revoked authorization reaches the worker as
    GmailAuthError (it parks the mailbox, as for the sync) with the row still pending."""
    clock = Clock()
    with _client(emulator) as client:
        lost = OutboxSender(db, ready, client, now=clock, still_leased=lambda: False)
        with pytest.raises(LeaseLost):
            lost.send_pending()
    (row,) = _rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 0)

    # Lost between the claim and the send (the worker stalled): the claim stands, nothing is
    # sent; the next owner, once the block ends, looks in Sent, finds nothing, sends once.
    leased = iter([True, False])
    with _client(emulator) as client:
        stalled = OutboxSender(db, ready, client, now=clock, still_leased=lambda: next(leased))
        with pytest.raises(LeaseLost):
            stalled.send_pending()
    (row,) = _rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 1)
    assert _sent(emulator) == []
    clock.advance(timedelta(seconds=60))
    assert _sender(db, emulator, ready, clock)().sent == 1
    (row,) = _rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 2)
    assert len(_sent(emulator)) == 1

    with db.unit_of_work() as s:
        s.execute(update(OutboxMessage).values(status=OutboxStatus.PENDING, attempts=0))
    with pytest.raises(GmailAuthError):
        _sender(db, emulator, ready, clock)(_client(emulator, "stranger@shop.test"))
    (row,) = _rows(db)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, 1)
    assert len(_sent(emulator)) == 1


def test_a_pass_sends_at_most_batch_size_oldest_first(db: Database, emulator: Emulator) -> None:
    """Three new tickets, two rows a pass: #1001 and #1002 first, #1003 on the next pass."""
    box = _mailbox(db)
    _sync(db, emulator, box)
    for i in range(3):
        _customer_writes(emulator, f"Question {i}", sender=f"c{i}@customer.test")
    _sync(db, emulator, box)
    send = _sender(db, emulator, box, Clock(), batch_size=2)
    assert send().sent == 2
    numbers = [
        re.search(rb"\[#(\d+)\]", m.raw).group(1)  # type: ignore[union-attr]
        for m in _sent(emulator)
    ]
    assert sorted(numbers) == [b"1001", b"1002"]
    assert send().sent == 1
    assert send().sent == 0
    assert len(_sent(emulator)) == 3
    assert {r.status for r in _rows(db)} == {OutboxStatus.SENT}


def test_emulator_scripts_faults_per_method_and_checks_recipients(emulator: Emulator) -> None:
    """What the sender's tests rely on in the emulator: ``/emulator/faults/method`` makes the
    next send fail before or after doing its work (then the mail is out although Gmail answered
    503), other methods are unaffected, and a send without a valid recipient is Gmail's 400."""
    with emulator.http(token_for=None) as http:
        answer = http.post(
            "/emulator/faults/method", json={"method": SEND, "status": 503, "after_work": True}
        )
        assert answer.status_code == 200
        refused = http.post("/emulator/faults/method", json={"method": SEND, "status": 418})
        assert refused.status_code == 422
    raw = mail("Hello", message_id="out-1@shop.test", sender=MAILBOX, to=CUSTOMER)
    with _client(emulator) as client:
        assert client.get_profile()["emailAddress"] == MAILBOX
        with pytest.raises(GmailError) as failed:
            client.send_raw(raw)
        assert failed.value.http_status == 503
        assert not failed.value.retryable  # a send is not repeated by the client
        assert len(_sent(emulator)) == 1  # … although it went out
        client.send_raw(raw.replace(b"out-1@", b"out-2@"))
        assert len(_sent(emulator)) == 2
        for to, message in (("", "Recipient address required"), ("ann", "Invalid To header")):
            lines = raw.replace(f"To: {CUSTOMER}".encode(), f"To: {to}".encode())
            with pytest.raises(GmailError, match=message) as bad:
                client.send_raw(lines)
            assert bad.value.http_status == 400
    assert len(_sent(emulator)) == 2
