"""Acknowledgement rate limits and the circuit breaker, through the real sync: per sender at most
3 an hour and 10 a day, one per sender and subject within 10 minutes, counted from the outbox
including what the same chunk queued; more than N a minute trips the breaker, which pauses the
mailbox's acknowledgements and raises an alert in GET /api/v1/mailboxes; every skipped
acknowledgement leaves an ``acknowledgement_skipped`` event; the limits are set by PATCH."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.acknowledgements.limits import (
    BREAKER_PAUSE,
    AckBudget,
    AckLimits,
    subject_key,
)
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.outbox.models import OutboxMessage
from app.tickets.models import Event, Ticket
from gmail_sync.client import GmailClient
from templates_replies.models import ReplyTemplate, Visibility
from tests.ack_fixtures import (  # noqa: F401
    ack_box_fixture,
    ack_gmail_fixture,
    customer_mail,
    events,
    import_inbox,
    outbox_rows,
    sync,
    tickets,
)
from tests.conftest import Caller
from tests.emulator_fixtures import (  # noqa: F401
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)

SKIPPED = "acknowledgement_skipped"


def _age_outbox(db: Database, by: timedelta) -> None:
    """Move every queued acknowledgement back in time (as if they were queued ``by`` ago)."""
    with db.unit_of_work() as s:
        for row in s.scalars(select(OutboxMessage)):
            row.created_at = row.created_at - by


def _skipped(db: Database) -> list[tuple[int, str]]:
    """(ticket number, reason) of every skipped acknowledgement, in ticket order."""
    with db.session() as s:
        rows = s.execute(
            select(Ticket.number, Event.new_value)
            .join(Event, Event.ticket_id == Ticket.id)
            .where(Event.field == SKIPPED)
            .order_by(Ticket.number)
        ).all()
    return [(number, reason) for number, reason in rows]


def _acked_numbers(db: Database) -> list[int]:
    with db.session() as s:
        return sorted(
            s.scalars(
                select(Ticket.number).join(OutboxMessage, OutboxMessage.ticket_id == Ticket.id)
            )
        )


def _set(db: Database, mailbox_id: int, **values: object) -> None:
    with db.unit_of_work() as s:
        mailbox = s.get_one(Mailbox, mailbox_id)
        for name, value in values.items():
            setattr(mailbox, name, value)


def test_three_an_hour_per_sender_counting_the_same_chunk(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """Five new tickets from one sender in one chunk: the first three acknowledged, the others
    skipped with the reason; another sender is not affected; an hour later it goes again."""
    for n in range(5):
        import_inbox(emulator, customer_mail(f"Question {n}", message_id=f"q{n}@c.test"))
    import_inbox(emulator, customer_mail("Hello", message_id="o@c.test", sender="bob@c.test"))
    report = sync(db, ack_box, ack_gmail)
    assert report.tickets_created == 6
    numbers = [t.number for t in tickets(db)]
    assert _acked_numbers(db) == numbers[:3] + numbers[5:]
    assert _skipped(db) == [
        (numbers[3], "sender_hourly_limit"),
        (numbers[4], "sender_hourly_limit"),
    ]

    _age_outbox(db, timedelta(minutes=61))
    import_inbox(emulator, customer_mail("Question 5", message_id="q5@c.test"))
    sync(db, ack_box, ack_gmail)
    assert len(_acked_numbers(db)) == 5


def test_the_same_subject_within_ten_minutes_is_acknowledged_once(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """Same sender, same subject (up to reply prefixes, case, spacing), separate threads: one
    acknowledgement; eleven minutes later the subject may be acknowledged again."""
    import_inbox(emulator, customer_mail("Order late", message_id="s1@c.test"))
    sync(db, ack_box, ack_gmail)
    import_inbox(emulator, customer_mail("RE:  order LATE", message_id="s2@c.test"))
    import_inbox(emulator, customer_mail("Order lost", message_id="s3@c.test"))
    sync(db, ack_box, ack_gmail)
    numbers = [t.number for t in tickets(db)]
    assert _acked_numbers(db) == [numbers[0], numbers[2]]
    assert _skipped(db) == [(numbers[1], "same_subject")]

    _age_outbox(db, timedelta(minutes=11))
    import_inbox(emulator, customer_mail("Order late", message_id="s4@c.test"))
    sync(db, ack_box, ack_gmail)
    assert _acked_numbers(db) == [numbers[0], numbers[2], numbers[2] + 1]


def test_ten_a_day_per_sender(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """Three an hour for four hours: ten acknowledged in the day, then none until a day after
    the first ones."""
    for hour in range(4):
        for n in range(3):
            import_inbox(emulator, customer_mail(f"H{hour} q{n}", message_id=f"d{hour}{n}@c.test"))
        sync(db, ack_box, ack_gmail)
        if hour < 3:
            _age_outbox(db, timedelta(hours=1, minutes=1))
    assert len(_acked_numbers(db)) == 10
    numbers = [t.number for t in tickets(db)]
    assert _skipped(db) == [
        (numbers[-2], "sender_daily_limit"),
        (numbers[-1], "sender_daily_limit"),
    ]

    _age_outbox(db, timedelta(hours=21))  # the first three are now more than a day old
    import_inbox(emulator, customer_mail("Next day", message_id="next@c.test"))
    sync(db, ack_box, ack_gmail)
    assert len(_acked_numbers(db)) == 11


def test_the_breaker_pauses_the_mailbox_and_raises_an_alert(
    db: Database,
    emulator: Emulator,
    ack_box: int,
    ack_gmail: GmailClient,
    client: TestClient,
    admin: Caller,
) -> None:
    """Limit 5 a minute: 3 acknowledged in one pass, 2 more in the next, the 6th trips the
    breaker (the count spans passes), later ones are "paused"; the mailbox shows the alert;
    an admin resumes with PATCH and acknowledgements go out again."""
    _set(db, ack_box, ack_breaker_per_minute=5)
    for n in range(3):
        import_inbox(
            emulator, customer_mail("Hi", message_id=f"a{n}@c.test", sender=f"a{n}@c.test")
        )
    sync(db, ack_box, ack_gmail)
    for n in range(5):
        import_inbox(
            emulator, customer_mail("Hi", message_id=f"b{n}@c.test", sender=f"b{n}@c.test")
        )
    before = datetime.now(UTC)
    sync(db, ack_box, ack_gmail)
    numbers = [t.number for t in tickets(db)]
    assert _acked_numbers(db) == numbers[:5]
    assert _skipped(db) == [
        (numbers[5], "circuit_breaker"),
        (numbers[6], "paused"),
        (numbers[7], "paused"),
    ]

    listed = client.get("/api/v1/mailboxes", headers=admin.headers).json()
    (shown,) = [m for m in listed if m["id"] == ack_box]
    assert shown["ack_paused"] is True
    assert "more than the limit of 5 a minute" in shown["ack_alert"]
    paused_until = datetime.fromisoformat(shown["ack_paused_until"])
    assert before + BREAKER_PAUSE <= paused_until <= datetime.now(UTC) + BREAKER_PAUSE

    import_inbox(emulator, customer_mail("Hi", message_id="c0@c.test", sender="c0@c.test"))
    sync(db, ack_box, ack_gmail)
    assert _skipped(db)[-1][1] == "paused"

    response = client.patch(
        f"/api/v1/mailboxes/{ack_box}",
        headers=admin.headers,
        json={"ack_paused_until": None, "ack_alert": None, "ack_breaker_per_minute": 60},
    )
    assert response.status_code == 200, response.text
    assert (response.json()["ack_paused"], response.json()["ack_alert"]) == (False, None)
    import_inbox(emulator, customer_mail("Hi", message_id="d0@c.test", sender="d0@c.test"))
    sync(db, ack_box, ack_gmail)
    assert len(outbox_rows(db)) == 6


def test_the_limits_are_set_per_mailbox_by_patch(
    db: Database,
    emulator: Emulator,
    ack_box: int,
    ack_gmail: GmailClient,
    client: TestClient,
    admin: Caller,
    agent: Caller,
) -> None:
    """Admins set the limits and the mailbox's own templates (shared ones only); bad values are
    422 naming the field; agents may not; a per-sender limit of 1 is then obeyed."""
    url = f"/api/v1/mailboxes/{ack_box}"
    with db.unit_of_work() as s:
        shared = ReplyTemplate(name="Own ack", language="en", body="Got it.")
        personal = ReplyTemplate(
            name="Mine", language="en", body="Mine.", visibility=Visibility.PERSONAL
        )
        s.add_all([shared, personal])
        s.flush()
        shared_id, personal_id = shared.id, personal.id

    assert (
        client.patch(url, headers=agent.headers, json={"ack_per_sender_hour": 1}).status_code == 403
    )
    for bad in (
        {"ack_per_sender_hour": 0},
        {"ack_per_sender_day": None},
        {"ack_same_subject_minutes": -1},
        {"ack_breaker_per_minute": 0},
        {"ack_alert": "silence"},
        {"ack_paused_until": "2030-01-01T00:00:00Z"},
    ):
        response = client.patch(url, headers=admin.headers, json=bad)
        assert response.status_code == 422, bad
    for template_id in (personal_id, 999_999):
        response = client.patch(url, headers=admin.headers, json={"ack_template_id": template_id})
        assert response.status_code == 422, template_id
        assert response.json()["error"]["code"] == "unknown_template"

    response = client.patch(
        url,
        headers=admin.headers,
        json={
            "ack_per_sender_hour": 1,
            "ack_per_sender_day": 5,
            "ack_same_subject_minutes": 0,
            "ack_breaker_per_minute": 100,
            "ack_ooh_template_id": shared_id,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["ack_per_sender_hour"],
        body["ack_per_sender_day"],
        body["ack_same_subject_minutes"],
        body["ack_breaker_per_minute"],
        body["ack_template_id"],
        body["ack_ooh_template_id"],
    ) == (1, 5, 0, 100, None, shared_id)
    cleared = client.patch(url, headers=admin.headers, json={"ack_ooh_template_id": None})
    assert cleared.json()["ack_ooh_template_id"] is None

    for n in range(2):
        import_inbox(emulator, customer_mail(f"Q{n}", message_id=f"p{n}@c.test"))
    sync(db, ack_box, ack_gmail)
    assert len(outbox_rows(db)) == 1
    assert [e.new_value for e in events(db, SKIPPED)] == ["sender_hourly_limit"]


# -- the budget itself, at chosen instants ------------------------------------------------------

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _budget(history: list[tuple[timedelta, str]], **limits: int) -> AckBudget:
    mailbox = Mailbox(email="support@shop.test", name="Support")
    return AckBudget(
        mailbox=mailbox,
        limits=AckLimits(**limits),
        by_sender={"ann@c.test": [(NOW - ago, subject_key(s)) for ago, s in history]},
        recent=[NOW - ago for ago, _ in history if ago < timedelta(minutes=1)],
    )


@pytest.mark.parametrize(
    ("history", "subject", "expected"),
    [
        ([], "Order", None),
        ([(timedelta(minutes=59), "a"), (timedelta(minutes=30), "b")], "c", None),
        ([(timedelta(minutes=59), "a")] * 3, "c", "sender_hourly_limit"),
        ([(timedelta(minutes=60), "a")] * 3, "c", None),  # exactly an hour ago: outside
        ([(timedelta(hours=2), "a")] * 10, "c", "sender_daily_limit"),
        ([(timedelta(hours=24), "a")] * 10, "c", None),
        ([(timedelta(minutes=9), "Re: Order [#1001]")], "order", "same_subject"),
        ([(timedelta(minutes=10), "Order")], "Order", None),
        ([(timedelta(minutes=2), "Fwd: Order")], "ORDER", "same_subject"),
    ],
)
def test_budget_windows(history: list[tuple[timedelta, str]], subject: str, expected: str) -> None:
    assert _budget(history).check("Ann@C.test", subject, NOW) == expected


def test_budget_breaker_trips_once_and_pauses() -> None:
    """60 in the last minute: the 61st trips the breaker (paused for BREAKER_PAUSE, an alert);
    while paused every check says "paused"; afterwards the minute counts afresh."""
    budget = _budget([])
    for n in range(60):
        assert budget.check(f"s{n}@c.test", "x", NOW) is None
        budget.record(f"s{n}@c.test", "x", NOW)
    assert budget.check("late@c.test", "x", NOW) == "circuit_breaker"
    assert budget.mailbox.ack_paused_until == NOW + BREAKER_PAUSE
    assert budget.mailbox.ack_alert is not None
    assert "60" in budget.mailbox.ack_alert
    assert budget.check("late@c.test", "x", NOW + timedelta(minutes=14)) == "paused"
    assert budget.check("late@c.test", "x", NOW + BREAKER_PAUSE) is None


def test_same_subject_window_zero_turns_the_rule_off() -> None:
    budget = _budget([(timedelta(seconds=5), "Order")], same_subject_minutes=0)
    assert budget.check("ann@c.test", "Order", NOW) is None


def test_mail_older_than_a_day_is_not_acknowledged(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """Connecting a mailbox reads 30 days of INBOX: those tickets open, but a "we received your
    request" days late is not sent — each such ticket says why. Mail of the last day is
    acknowledged (the worker may have been down overnight)."""

    def dated(raw: bytes, age: timedelta) -> bytes:
        date = format_datetime(datetime.now(UTC) - age).encode()
        return re.sub(rb"^Date: [^\r\n]*", b"Date: " + date, raw, count=1, flags=re.MULTILINE)

    old = dated(customer_mail("Printer broken", message_id="o@c.test"), timedelta(days=3))
    recent = customer_mail("Scanner broken", message_id="n@c.test", sender="new@c.test")
    recent = dated(recent, timedelta(hours=20))
    import_inbox(emulator, old)  # internalDate from the Date header, as messages.import does
    import_inbox(emulator, recent)
    report = sync(db, ack_box, ack_gmail)
    assert report.full_sync
    assert report.tickets_created == 2
    old_ticket, new_ticket = tickets(db)
    assert _acked_numbers(db) == [new_ticket.number]
    assert _skipped(db) == [(old_ticket.number, "too_old")]
