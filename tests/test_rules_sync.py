"""The rules in the real sync, against the Gmail emulator: new tickets triaged in the chunk that
opens them, the acknowledgement skipped by a rule or for spam (an ``acknowledgement_skipped``
event, no outbox row), customers' replies seen only by ``run_on_replies`` rules, business hours
taken from Gmail's internalDate, the default team for tickets no rule placed, and one rule-set
lookup per chunk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from sqlalchemy import event, select

from app.agents.models import Agent, Team
from app.db.session import Database
from app.mailboxes.models import Mailbox
from app.rules import service as rules
from app.rules.models import Rule
from app.rules.schemas import RuleCreate
from app.sla.models import BusinessCalendar
from app.tickets.models import ActorKind, Event, Priority, Status, Ticket, TicketTag
from gmail_sync.client import GmailClient
from tests.ack_fixtures import (  # noqa: F401
    ack_box_fixture,
    ack_gmail_fixture,
    customer_mail,
    events,
    import_inbox,
    outbox_rows,
    sync,
    ticket_of_thread,
)
from tests.emulator_fixtures import (  # noqa: F401
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)

SKIPPED = "acknowledgement_skipped"


def add_rule(db: Database, **fields: Any) -> int:
    fields.setdefault("name", "rule")
    fields.setdefault("conditions", [])
    with db.unit_of_work() as s:
        return rules.create_rule(s, data=RuleCreate.model_validate(fields)).id


def tags_of(db: Database, ticket_id: int) -> list[str]:
    with db.session() as s:
        stmt = select(TicketTag.tag).where(TicketTag.ticket_id == ticket_id).order_by(TicketTag.tag)
        return list(s.scalars(stmt))


def ticket_events(db: Database, ticket_id: int) -> list[Event]:
    with db.session() as s:
        stmt = select(Event).where(Event.ticket_id == ticket_id).order_by(Event.id)
        return list(s.scalars(stmt))


def test_rules_triage_new_tickets_and_skip_acknowledgements(
    db: Database, ack_box: int, ack_gmail: GmailClient, emulator: Emulator
) -> None:
    urgent = add_rule(
        db,
        name="Outage",
        position=1,
        conditions=[{"field": "text", "op": "words", "value": ["не работает", "site down"]}],
        actions=[
            {"type": "set_priority", "value": "urgent"},
            {"type": "add_tag", "value": "outage"},
        ],
    )
    quiet = add_rule(
        db,
        name="Partners: no auto-reply",
        position=2,
        conditions=[{"field": "from_domain", "op": "is", "value": "partner.test"}],
        actions=[{"type": "skip_acknowledgement"}],
    )
    spam = add_rule(
        db,
        name="Spam",
        position=3,
        stop_processing=True,
        conditions=[{"field": "subject", "op": "regex", "value": r"you\s+won|casino"}],
        actions=[{"type": "close_as_spam"}],
    )
    never = add_rule(
        db, name="Never", position=4, enabled=False, actions=[{"type": "add_tag", "value": "x"}]
    )
    threads = {
        "outage": import_inbox(
            emulator,
            customer_mail("Сайт", message_id="m1@c.test", body="Сайт не работает с утра"),
        )["threadId"],
        "partner": import_inbox(
            emulator,
            customer_mail(
                "Invoice", message_id="m2@p.test", sender="ops@eu.partner.test", body="Attached."
            ),
        )["threadId"],
        "spam": import_inbox(
            emulator,
            customer_mail("YOU  WON a prize", message_id="m3@s.test", sender="win@lucky.test"),
        )["threadId"],
        "plain": import_inbox(
            emulator, customer_mail("Order", message_id="m4@c.test", sender="bob@c.test")
        )["threadId"],
    }
    report = sync(db, ack_box, ack_gmail)
    assert report.tickets_created == 4
    by = {name: ticket_of_thread(db, thread) for name, thread in threads.items()}

    assert by["outage"].priority == Priority.URGENT
    assert tags_of(db, by["outage"].id) == ["outage"]
    fired = [e for e in ticket_events(db, by["outage"].id) if e.field == "rule_fired"]
    assert [(e.actor_kind, e.actor_id) for e in fired] == [(ActorKind.RULE, urgent)]
    assert fired[0].new_value == {"rule": "Outage", "actions": ["set_priority", "add_tag"]}

    assert by["spam"].status == Status.CLOSED
    assert tags_of(db, by["spam"].id) == ["spam"]
    assert by["plain"].priority == Priority.NORMAL
    assert tags_of(db, by["plain"].id) == []

    # Acknowledged: the outage and the plain one; skipped by the rules: the partner's and spam.
    acked = {row.ticket_id for row in outbox_rows(db)}
    assert acked == {by["outage"].id, by["plain"].id}
    skipped = {(e.ticket_id, e.new_value, e.actor_kind, e.actor_id) for e in events(db, SKIPPED)}
    assert skipped == {
        (by["partner"].id, "rule", ActorKind.RULE, quiet),
        (by["spam"].id, "spam", ActorKind.RULE, spam),
    }
    assert all(e.actor_id != never for e in events(db, "rule_fired"))


def test_no_skipped_event_when_the_mailbox_does_not_acknowledge(
    db: Database, ack_box: int, ack_gmail: GmailClient, emulator: Emulator
) -> None:
    with db.unit_of_work() as s:
        s.get_one(Mailbox, ack_box).auto_ack_enabled = False
    add_rule(db, actions=[{"type": "skip_acknowledgement"}, {"type": "add_tag", "value": "seen"}])
    thread = import_inbox(emulator, customer_mail("Hi", message_id="q1@c.test"))["threadId"]
    sync(db, ack_box, ack_gmail)
    assert tags_of(db, ticket_of_thread(db, thread).id) == ["seen"]
    assert events(db, SKIPPED) == []
    assert outbox_rows(db) == []


def test_replies_meet_only_the_rules_that_run_on_replies(
    db: Database, ack_box: int, ack_gmail: GmailClient, emulator: Emulator
) -> None:
    add_rule(db, name="tag new", position=1, actions=[{"type": "add_tag", "value": "new"}])
    chase = add_rule(
        db,
        name="Chased",
        position=2,
        run_on_replies=True,
        conditions=[{"field": "text", "op": "words", "value": ["срочно", "urgent"]}],
        actions=[{"type": "set_priority", "value": "high", "only_raise": True}],
    )
    first = import_inbox(emulator, customer_mail("Order 77", message_id="r1@c.test"))
    sync(db, ack_box, ack_gmail)
    ticket = ticket_of_thread(db, first["threadId"])
    assert tags_of(db, ticket.id) == ["new"]
    assert ticket.priority == Priority.NORMAL
    # A calm reply: nothing; an urgent one: the reply rule only ("tag new" does not run again);
    # another urgent one changes nothing (already high), so it leaves no "rule_fired" line.
    for message_id, body in (
        ("r2@c.test", "Any news?"),
        ("r3@c.test", "Это срочно!"),
        ("r4@c.test", "Still urgent, please!"),
    ):
        import_inbox(
            emulator,
            customer_mail(
                "Re: Order 77",
                message_id=message_id,
                body=body,
                in_reply_to="r1@c.test",
                references=("r1@c.test",),
            ),
            thread_id=first["threadId"],
        )
        sync(db, ack_box, ack_gmail)
    ticket = ticket_of_thread(db, first["threadId"])
    assert ticket.priority == Priority.HIGH
    fired = [e for e in ticket_events(db, ticket.id) if e.field == "rule_fired"]
    assert [e.new_value["rule"] for e in fired] == ["tag new", "Chased"]
    assert fired[1].actor_id == chase
    assert tags_of(db, ticket.id) == ["new"]


def _last(hour: int) -> datetime:
    """The latest instant before now at ``hour``:00 UTC."""
    now = datetime.now(UTC)
    at = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return at if at < now else at - timedelta(days=1)


def test_business_hours_come_from_gmails_receipt_time(
    db: Database, ack_box: int, ack_gmail: GmailClient, emulator: Emulator
) -> None:
    with db.unit_of_work() as s:
        every_day = {
            d: [["00:00", "12:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        }
        calendar = BusinessCalendar(name="Mornings", timezone="UTC", weekly_hours=every_day)
        s.add(calendar)
        s.flush()
        s.get_one(Mailbox, ack_box).business_calendar_id = calendar.id
    add_rule(
        db,
        conditions=[{"field": "business_hours", "op": "is", "value": False}],
        actions=[{"type": "add_tag", "value": "after-hours"}],
    )
    threads = {}
    for name, at in (("morning", _last(6)), ("evening", _last(18))):
        raw = customer_mail(name, message_id=f"{name}@c.test")
        # The emulator takes internalDate from the Date header (as Gmail's import does).
        lines = [
            line if not line.startswith(b"Date:") else f"Date: {format_datetime(at)}".encode()
            for line in raw.split(b"\r\n")
        ]
        threads[name] = import_inbox(emulator, b"\r\n".join(lines))["threadId"]
    sync(db, ack_box, ack_gmail)
    assert tags_of(db, ticket_of_thread(db, threads["morning"]).id) == []
    assert tags_of(db, ticket_of_thread(db, threads["evening"]).id) == ["after-hours"]


def _team(
    db: Database, mailbox_id: int | None, strategy: str, *names: str
) -> tuple[int, list[int]]:
    with db.unit_of_work() as s:
        members = [Agent(email=f"{n}@team.test", name=n, shifts=[], time_off=[]) for n in names]
        team = Team(name=f"Team {strategy}", assignment_strategy=strategy, mailbox_id=mailbox_id)
        team.members = members
        s.add(team)
        s.flush()
        return team.id, [m.id for m in members]


def test_the_default_team_takes_what_no_rule_placed(
    db: Database, ack_box: int, ack_gmail: GmailClient, emulator: Emulator
) -> None:
    team_id, (ann, bob) = _team(db, ack_box, "round_robin", "ann", "bob")
    billing_id, (cat,) = _team(db, None, "manual", "cat")
    add_rule(
        db,
        name="VIP to Cat",
        conditions=[{"field": "from", "op": "is", "value": "vip@c.test"}],
        actions=[{"type": "assign_agent", "value": cat}],
    )
    add_rule(
        db,
        name="Billing team",
        conditions=[{"field": "subject", "op": "contains", "value": "invoice"}],
        actions=[{"type": "set_team", "value": billing_id}],
    )
    threads = [
        import_inbox(emulator, customer_mail(subject, message_id=f"d{i}@c.test", sender=sender))[
            "threadId"
        ]
        for i, (subject, sender) in enumerate(
            [
                ("Order 1", "a@c.test"),
                ("Order 2", "b@c.test"),
                ("Hello", "vip@c.test"),
                ("Invoice 9", "d@c.test"),
            ]
        )
    ]
    sync(db, ack_box, ack_gmail)
    one, two, vip, invoice = (ticket_of_thread(db, t) for t in threads)
    # Round-robin over the default team for the two tickets no rule placed.
    assert (one.team_id, two.team_id) == (team_id, team_id)
    assert {one.assignee_id, two.assignee_id} == {ann, bob}
    team_event = next(e for e in ticket_events(db, one.id) if e.field == "team")
    assert (team_event.actor_kind, team_event.new_value) == (ActorKind.SYNC, team_id)
    # Assigned by a rule: no default team; put in a team by a rule: that team (manual) stays.
    assert (vip.team_id, vip.assignee_id) == (None, cat)
    assert (invoice.team_id, invoice.assignee_id) == (billing_id, None)


def test_one_rule_set_lookup_per_chunk(
    db: Database, ack_box: int, ack_gmail: GmailClient, emulator: Emulator
) -> None:
    add_rule(
        db,
        run_on_replies=True,
        conditions=[{"field": "segment", "op": "is", "value": "regular"}],
        actions=[{"type": "add_tag", "value": "regular"}],
    )
    for i in range(6):
        import_inbox(
            emulator, customer_mail(f"Order {i}", message_id=f"c{i}@c.test", sender=f"u{i}@c.test")
        )
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        report = sync(db, ack_box, ack_gmail)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert report.tickets_created == 6
    rule_queries = [s for s in statements if "FROM rules" in s]
    # The fingerprint, and (first sight of these rules) the rows: not one per message.
    assert len(rule_queries) <= 2
    with db.session() as s:
        tagged = s.scalars(select(TicketTag.ticket_id).where(TicketTag.tag == "regular")).all()
        assert len(tagged) == 6
        assert s.scalar(select(Rule.id)) is not None
        assert {t.status for t in s.scalars(select(Ticket))} == {Status.NEW}
