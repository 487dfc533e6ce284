"""The acknowledgement a new ticket gets, composed and queued by the real sync from the emulator:
one outbox row per ticket, in the same Gmail thread, with the threading headers, a single ``Re:``
and a single ``[#number]``, a Message-ID whose HMAC names the ticket (a reply finds the ticket by
it alone), the text of the mailbox's template in the customer's language with the promised time,
the out-of-hours template outside business hours, built-in texts without a library; none when
the mailbox has acknowledgements off; our synced-back copy is not the first response."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from app.acknowledgements import signing
from app.acknowledgements.compose import (
    AckTemplate,
    AckTemplates,
    ack_message_id,
    ack_subject,
    builtin_template,
    threading_headers,
    ticket_of_message_id,
)
from app.config import reset_settings
from app.customers.models import Customer
from app.db.session import Database
from app.languages import detect_language
from app.mailboxes.models import Mailbox
from app.messages.models import Direction, Message
from app.outbox.models import InstallationSecret, OutboxMessage
from app.sla.calendar import WEEKDAYS
from app.sla.models import BusinessCalendar
from app.tickets.models import Status, Ticket
from gmail_sync.client import GmailClient
from templates_replies.context import customer_zone, format_due
from templates_replies.library import seed_default_templates
from templates_replies.models import ReplyTemplate, Visibility
from tests.ack_fixtures import (  # noqa: F401
    ack_box_fixture,
    ack_gmail_fixture,
    customer_mail,
    events,
    import_inbox,
    now_header,
    outbox_rows,
    sync,
    ticket_of_thread,
    tickets,
)
from tests.emulator_fixtures import (  # noqa: F401
    MAILBOX,
    Emulator,
    emulator_fixture,
    emulator_server_fixture,
)

RU_BODY = "Здравствуйте! Заказ 4821 так и не пришёл, подскажите, что случилось?"


def _seed(db: Database) -> None:
    with db.unit_of_work() as s:
        seed_default_templates(s)


def _due_text(db: Database, ticket: Ticket, language: str) -> str:
    with db.session() as s:
        customer = s.get(Customer, ticket.customer_id)
        mailbox = s.get(Mailbox, ticket.mailbox_id)
        zone = customer_zone(s, customer=customer, mailbox=mailbox)
    assert ticket.first_response_due_at is not None
    return format_due(ticket.first_response_due_at, zone, language)


# -- end to end: the sync queues one acknowledgement per new ticket ---------------------------


def test_a_new_ticket_gets_one_acknowledgement_in_its_thread(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """Russian customer: Russian template, ticket number, promised time in the customer's zone,
    threading headers, the thread, a Message-ID naming the ticket; English customer: English."""
    _seed(db)
    ru = import_inbox(
        emulator,
        customer_mail(
            "Re: Re: Заказ не пришёл [#77]",
            message_id="ru-1@customer.test",
            sender="Анна Петрова <Anna@Customer.test>",
            body=RU_BODY,
            references=("old-1@shop.test", "old-2@customer.test"),
        ),
    )
    en = import_inbox(
        emulator,
        customer_mail("Order late", message_id="en-1@customer.test", sender="Bob <bob@c.test>"),
    )
    report = sync(db, ack_box, ack_gmail)
    assert report.tickets_created == 2

    rows = {row.to_address: row for row in outbox_rows(db)}
    assert set(rows) == {"anna@customer.test", "bob@c.test"}
    ru_ticket, en_ticket = (
        ticket_of_thread(db, ru["threadId"]),
        ticket_of_thread(db, en["threadId"]),
    )

    row = rows["anna@customer.test"]
    assert (row.kind, row.status.value, row.attempts, row.is_html) == ("ack", "pending", 0, False)
    assert row.ticket_id == ru_ticket.id
    assert row.gmail_thread_id == ru["threadId"]
    assert row.subject == f"Re: Заказ не пришёл [#{ru_ticket.number}]"
    assert row.in_reply_to == "<ru-1@customer.test>"
    assert row.references == "<old-1@shop.test> <old-2@customer.test> <ru-1@customer.test>"
    assert row.rfc822_message_id.startswith(f"<ack.{ru_ticket.id}.")
    assert row.rfc822_message_id.endswith("@shop.test>")
    assert ticket_of_message_id(row.rfc822_message_id) == ru_ticket.id
    assert f"#{ru_ticket.number}" in row.body
    assert "Спасибо за обращение" in row.body  # the shared Russian "ack" template
    assert f"ответит вам до {_due_text(db, ru_ticket, 'ru')}." in row.body
    assert "Анна" in row.body

    row = rows["bob@c.test"]
    assert row.subject == f"Re: Order late [#{en_ticket.number}]"
    assert row.references == "<en-1@customer.test>"
    assert "Thank you for writing to us" in row.body
    assert f"reply by {_due_text(db, en_ticket, 'en')}." in row.body
    assert ticket_of_message_id(row.rfc822_message_id) == en_ticket.id

    # The acknowledgement is not an answer: the tickets still wait for their first response.
    for ticket in tickets(db):
        assert (ticket.status, ticket.first_response_at) == (Status.NEW, None)


def test_later_messages_and_a_second_sync_queue_nothing_more(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    first = import_inbox(emulator, customer_mail("Refund", message_id="r-1@c.test"))
    sync(db, ack_box, ack_gmail)
    import_inbox(
        emulator,
        customer_mail(
            "Re: Refund",
            message_id="r-2@c.test",
            in_reply_to="r-1@c.test",
            references=("r-1@c.test",),
        ),
    )
    report = sync(db, ack_box, ack_gmail)
    assert report.fetched == 1
    assert report.tickets_created == 0
    emulator.state.expire_history(MAILBOX)
    sync(db, ack_box, ack_gmail)  # a full resync after a history 404
    rows = outbox_rows(db)
    assert len(rows) == 1
    assert rows[0].ticket_id == ticket_of_thread(db, first["threadId"]).id


def test_our_synced_copy_is_not_the_first_response_even_without_its_outbox_row(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """The sent acknowledgement comes back through the sync (SENT): stored as AUTO, the ticket
    stays new and unanswered — by the outbox row, and by the HMAC once the row is purged."""
    for n in (1, 2):
        import_inbox(emulator, customer_mail(f"Topic {n}", message_id=f"t{n}@c.test"))
    sync(db, ack_box, ack_gmail)
    rows = outbox_rows(db)
    assert len(rows) == 2
    with db.unit_of_work() as s:
        s.execute(delete(OutboxMessage).where(OutboxMessage.id == rows[1].id))
    for row in rows:
        raw = (
            f"From: Shop Support <{MAILBOX}>\r\nTo: {row.to_address}\r\n"
            f"Subject: {row.subject}\r\nMessage-ID: {row.rfc822_message_id}\r\n"
            f"In-Reply-To: {row.in_reply_to}\r\nReferences: {row.references}\r\n"
            f"Date: {now_header()}\r\nAuto-Submitted: auto-replied\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            f"{row.body}\r\n"
        ).encode()
        emulator.state.import_raw(MAILBOX, raw, label_ids=("SENT",), thread_id=row.gmail_thread_id)
    sync(db, ack_box, ack_gmail)
    with db.session() as s:
        copies = list(s.scalars(select(Message).where(Message.direction == Direction.AUTO)))
        assert sorted(m.ticket_id for m in copies) == sorted(r.ticket_id for r in rows)
        for ticket in s.scalars(select(Ticket)):
            assert (ticket.status, ticket.first_response_at) == (Status.NEW, None)


def test_a_reply_to_the_acknowledgement_finds_its_ticket_by_the_hmac_alone(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """Gmail starts a new thread (another subject, no [#n]); the outbox row is purged: the
    signed In-Reply-To still names the ticket. A forged id of our form opens a new ticket."""
    import_inbox(emulator, customer_mail("Broken kettle", message_id="k-1@c.test"))
    sync(db, ack_box, ack_gmail)
    (row,) = outbox_rows(db)
    with db.unit_of_work() as s:
        s.execute(delete(OutboxMessage))
    ack_id = row.rfc822_message_id.strip("<>")
    reply = import_inbox(
        emulator,
        customer_mail(
            "Photos of the kettle", message_id="k-2@c.test", in_reply_to=ack_id, references=()
        ),
    )
    forged_id = f"ack.{row.ticket_id}.{'a' * 24}@shop.test"
    forged = import_inbox(
        emulator,
        customer_mail("Another thing", message_id="k-3@c.test", in_reply_to=forged_id),
    )
    report = sync(db, ack_box, ack_gmail)
    assert report.tickets_created == 1  # the forged one only
    with db.session() as s:
        stored = s.scalar(select(Message).where(Message.gmail_message_id == reply["id"]))
        other = s.scalar(select(Message).where(Message.gmail_message_id == forged["id"]))
    assert stored is not None
    assert stored.ticket_id == row.ticket_id
    assert other is not None
    assert other.ticket_id != row.ticket_id


def test_out_of_hours_the_out_of_hours_template_answers(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """A calendar closed now (open on another weekday only): the "ack-ooh" template, with the
    ticket's first-response due as the promised time."""
    _seed(db)
    today = datetime.now(UTC).weekday()
    other_day = WEEKDAYS[(today + 3) % 7]
    with db.unit_of_work() as s:
        calendar = BusinessCalendar(
            name="Weekly", timezone="UTC", weekly_hours={other_day: [["09:00", "17:00"]]}
        )
        s.add(calendar)
        s.flush()
        s.get_one(Mailbox, ack_box).business_calendar_id = calendar.id
    import_inbox(emulator, customer_mail("Заказ", message_id="o-1@c.test", body=RU_BODY))
    import_inbox(emulator, customer_mail("Order", message_id="o-2@c.test", sender="b@c.test"))
    sync(db, ack_box, ack_gmail)
    rows = {row.to_address: row for row in outbox_rows(db)}
    with db.session() as s:
        ru = s.get_one(Ticket, rows["ann@customer.test"].ticket_id)
        en = s.get_one(Ticket, rows["b@c.test"].ticket_id)
    assert "пришло в нерабочее время" in rows["ann@customer.test"].body
    assert f"ответим до {_due_text(db, ru, 'ru')}." in rows["ann@customer.test"].body
    assert "outside our business hours" in rows["b@c.test"].body
    assert f"get back to you by {_due_text(db, en, 'en')}." in rows["b@c.test"].body


def test_without_templates_the_built_in_texts_answer(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """No library at all (never seeded): the built-in Russian or English text, still with the
    number and the promised time."""
    import_inbox(emulator, customer_mail("Заказ", message_id="b-1@c.test", body=RU_BODY))
    import_inbox(emulator, customer_mail("Order", message_id="b-2@c.test", sender="b@c.test"))
    sync(db, ack_box, ack_gmail)
    rows = {row.to_address: row for row in outbox_rows(db)}
    with db.session() as s:
        ru = s.get_one(Ticket, rows["ann@customer.test"].ticket_id)
        en = s.get_one(Ticket, rows["b@c.test"].ticket_id)
    assert rows["ann@customer.test"].body.startswith("Здравствуйте")
    assert f"под номером #{ru.number}. Ответим до {_due_text(db, ru, 'ru')}." in (
        rows["ann@customer.test"].body
    )
    assert f"as ticket #{en.number}. We will reply by {_due_text(db, en, 'en')}." in (
        rows["b@c.test"].body
    )
    assert rows["b@c.test"].subject == f"Re: Order [#{en.number}]"


def test_the_mailbox_own_template_overrides_the_shared_one(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """``ack_template_id`` wins over the shared library in any language; deleting that template
    puts the mailbox back on the shared ones (the link goes with it)."""
    _seed(db)
    with db.unit_of_work() as s:
        own = ReplyTemplate(
            name="Billing ack",
            language="en",
            visibility=Visibility.SHARED,
            subject="[#{{ ticket.number }}] {{ ticket.subject }}",
            body="Billing got it: #{{ ticket.number }}.",
        )
        s.add(own)
        s.flush()
        s.get_one(Mailbox, ack_box).ack_template_id = own.id
        own_id = own.id
    import_inbox(emulator, customer_mail("Счёт", message_id="v-1@c.test", body=RU_BODY))
    sync(db, ack_box, ack_gmail)
    (row,) = outbox_rows(db)
    with db.session() as s:
        number = s.get_one(Ticket, row.ticket_id).number
    assert row.body == f"Billing got it: #{number}."
    assert row.subject == f"[#{number}] Счёт"

    with db.unit_of_work() as s:
        s.delete(s.get_one(ReplyTemplate, own_id))
    with db.session() as s:
        assert s.get_one(Mailbox, ack_box).ack_template_id is None


def test_acknowledgements_off_queue_nothing(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    with db.unit_of_work() as s:
        s.get_one(Mailbox, ack_box).auto_ack_enabled = False
    import_inbox(emulator, customer_mail("Order", message_id="n-1@c.test"))
    report = sync(db, ack_box, ack_gmail)
    assert report.tickets_created == 1
    assert outbox_rows(db) == []
    assert events(db, "acknowledgement_skipped") == []


# -- the pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rendered", "original", "expected"),
    [
        ("Re: Order [#1042]", "Order", "Re: Order [#1042]"),
        ("Re: Re: RE: Order [#1042]", "Re: RE: Order", "Re: Order [#1042]"),
        ("Re: Ответ: AW: Заказ [#1042]", "", "Re: Заказ [#1042]"),
        ("Re: Order [#17] [#1042]", "Order [#17]", "Re: Order [#1042]"),
        ("Re: Order [#1042] [#1042]", "Order [#1042]", "Re: Order [#1042]"),
        ("[#1042] Order", "Order", "[#1042] Order"),  # the template's own layout is kept
        ("Thanks for writing", "Order", "Thanks for writing [#1042]"),
        (None, "Fwd: Order", "Re: Fwd: Order [#1042]"),
        ("  ", "Re:  Order\t", "Re: Order [#1042]"),
    ],
)
def test_ack_subject(rendered: str | None, original: str, expected: str) -> None:
    """One reply prefix at most, exactly one [#number]: other numbers would mislead the sync."""
    assert ack_subject(rendered, original=original, number=1042) == expected


def test_threading_headers() -> None:
    """RFC 5322 §3.6.4: In-Reply-To the message; References its references plus it; a long
    chain keeps the first and the latest ids."""
    assert threading_headers("m@x", ()) == ("<m@x>", "<m@x>")
    assert threading_headers("m@x", ("a@x", "b@x")) == ("<m@x>", "<a@x> <b@x> <m@x>")
    assert threading_headers(None, ("a@x",)) == (None, "<a@x>")
    assert threading_headers(None, ()) == (None, None)
    chain = tuple(f"r{i}@x" for i in range(40))
    _in_reply_to, references = threading_headers("m@x", chain)
    assert references is not None
    ids = references.split()
    assert len(ids) == 20
    assert ids[0] == "<r0@x>"
    assert ids[-2:] == ["<r39@x>", "<m@x>"]


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("Здравствуйте, где мой заказ?", "en", "ru"),
        ("Order 4821: где посылка? Трек не обновляется", "en", "ru"),
        ("Where is my order?", "ru", "ru"),  # Latin: the mailbox's language stands
        ("Where is my order?", "en", "en"),
        ("Wo ist meine Bestellung?", "de", "de"),
        ("12345 !!!", "en", "en"),
        ("Hello, the error says: ошибка", "en", "en"),  # mostly Latin
        ("", "en", "en"),
    ],
)
def test_detect_language(text: str, default: str, expected: str) -> None:
    assert detect_language(text, default=default) == expected


def test_template_choice_prefers_the_language_then_out_of_hours() -> None:
    """Customer's language, then the mailbox's, then English; out of hours "ack-ooh" before
    "ack" within a language; overrides first; built-in text last."""

    def t(template_id: int, language: str) -> AckTemplate:
        return AckTemplate(template_id, language, None, "body", False)

    shared = {
        ("ack", "ru"): t(1, "ru"),
        ("ack", "en"): t(2, "en"),
        ("ack-ooh", "en"): t(3, "en"),
        ("ack", "de"): t(4, "de"),
    }
    library = AckTemplates(shared)

    def choose(lang: str, mailbox_lang: str, ooh: bool, lib: AckTemplates = library) -> int | None:
        return lib.choose(
            language=lang, mailbox_language=mailbox_lang, out_of_hours=ooh
        ).template_id

    assert choose("ru", "en", False) == 1
    assert choose("ru", "en", True) == 1  # a Russian "ack" beats an English "ack-ooh"
    assert choose("en", "en", True) == 3
    assert choose("fr", "de", False) == 4
    assert choose("fr", "it", True) == 3
    override = AckTemplates(shared, ack_override=t(9, "en"), ooh_override=t(10, "en"))
    assert choose("ru", "ru", False, override) == 9
    assert choose("ru", "ru", True, override) == 10
    assert choose("ru", "ru", True, AckTemplates(shared, ack_override=t(9, "en"))) == 9
    empty = AckTemplates({})
    built_in = empty.choose(language="ru", mailbox_language="en", out_of_hours=True)
    assert built_in == builtin_template("ru", out_of_hours=True)
    assert built_in.template_id is None
    assert empty.choose(language="de", mailbox_language="de", out_of_hours=False).language == "en"


# -- the signed Message-ID ---------------------------------------------------------------------


def test_message_ids_verify_and_forgeries_do_not(db: Database) -> None:
    with db.unit_of_work() as s:
        signing.load_signing_key(s)
    message_id = ack_message_id(ticket_id=42, domain="Shop.Test")
    assert message_id.startswith("<ack.42.")
    assert message_id.endswith("@shop.test>")
    assert ticket_of_message_id(message_id) == 42
    assert ticket_of_message_id(message_id.strip("<>")) == 42  # as the parser gives it
    mac = message_id.split(".")[2]
    for forged in (
        message_id.replace("ack.42.", "ack.43."),  # another ticket with this MAC
        message_id.replace(mac, mac[::-1]),
        message_id.replace(mac, mac.upper()),
        "<ack.42.abc@shop.test>",
        "<m1@customer.example>",
        "",
    ):
        assert ticket_of_message_id(forged) is None, forged
    assert (
        ack_message_id(ticket_id=42, domain="other.test").split("@")[0] == message_id.split("@")[0]
    )


def test_the_key_comes_from_the_secret_key_when_set(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INBOXDESK_SECRET_KEY set: its HKDF key, no database needed; ids signed with the
    installation key do not verify under it, and the other way round."""
    with db.unit_of_work() as s:
        signing.load_signing_key(s)
    installation_id = ack_message_id(ticket_id=7, domain="shop.test")
    monkeypatch.setenv("INBOXDESK_SECRET_KEY", "a-long-random-secret-for-the-test")
    reset_settings()
    try:
        monkeypatch.setattr(signing, "_installation", None)  # proves no row is needed
        secret_id = ack_message_id(ticket_id=7, domain="shop.test")
        assert secret_id != installation_id
        assert ticket_of_message_id(secret_id) == 7
        assert ticket_of_message_id(installation_id) is None
    finally:
        monkeypatch.delenv("INBOXDESK_SECRET_KEY")
        reset_settings()


def test_without_a_loaded_key_signing_refuses_and_verifying_says_not_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(signing, "_installation", None)
    with pytest.raises(signing.SigningKeyNotLoaded):
        ack_message_id(ticket_id=1, domain="shop.test")
    assert ticket_of_message_id("<m1@customer.example>") is None  # not our form: no key needed
    assert signing.signed_by_us(f"<ack.1.{'a' * 24}@shop.test>") is False


def test_the_installation_secret_is_made_by_the_migration_and_made_again_if_lost(
    db: Database,
) -> None:
    """Migration 0005 stores a random key; a lost row is written again with the key this
    process knew, so the ids it signed stay valid."""
    with db.unit_of_work() as s:
        stored = s.scalar(select(InstallationSecret.value).where(InstallationSecret.id == 1))
        signing.load_signing_key(s)
    if stored is not None:  # (a test before may have emptied the tables)
        assert len(stored) == 32
    signed = ack_message_id(ticket_id=5, domain="shop.test")
    with db.unit_of_work() as s:
        s.execute(delete(InstallationSecret))
    with db.unit_of_work() as s:
        signing.load_signing_key(s)
        again = s.scalar(select(InstallationSecret.value).where(InstallationSecret.id == 1))
    assert again is not None
    assert ticket_of_message_id(signed) == 5


def test_the_acknowledgement_time_window_is_now(
    db: Database, emulator: Emulator, ack_box: int, ack_gmail: GmailClient
) -> None:
    """The row is stamped when it is queued (the rate limits count by it)."""
    before = datetime.now(UTC)
    import_inbox(emulator, customer_mail("Order", message_id="w-1@c.test"))
    sync(db, ack_box, ack_gmail)
    (row,) = outbox_rows(db)
    assert before - timedelta(seconds=1) <= row.created_at <= datetime.now(UTC)
