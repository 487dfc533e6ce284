"""``gmail_sync.automated``: every real automated message is recognised, with its reasons; each
rule fires on its signal and only on it; ordinary customer mail (``Auto-Submitted: no``,
``X-Mailer``, ``X-Priority``, ``Importance``, its own ``Return-Path``) is not automated."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

import pytest

from app.acknowledgements.signing import ack_message_id
from app.config import reset_settings
from gmail_sync.automated import Verdict, automated_verdict
from gmail_sync.corpus import generate_conversations
from gmail_sync.parse import parse_message
from tests.conftest import CORPUS

AUTOMATED = sorted((CORPUS / "automated").glob("*.eml"))
MAILBOX = "support@shop.test"
CLIENT_HEADERS = ("x-mailer", "x-priority", "importance", "auto-submitted")
REASON = re.compile(r"^[a-z0-9*<>/_.:-]+$")


def _verdict(headers: str, body: str = "Hello, my order is late.", **kwargs: object) -> Verdict:
    """The verdict of a plain message with the given extra header lines."""
    base = "Message-ID: <m1@customer.example>\r\nSubject: Order 4821\r\nTo: support@shop.test\r\n"
    if not re.search(r"(?im)^from:", headers):
        base = "From: Customer <customer@example.com>\r\n" + base
    raw = (base + headers + "\r\n" + body + "\r\n").encode()
    return automated_verdict(parse_message(raw), **kwargs)  # type: ignore[arg-type]


def test_every_corpus_message_is_automated_with_reasons() -> None:
    """All 158 real messages: automated, each with at least one reason, in the stable vocabulary.
    The reasons histogram is printed (``pytest -s``) for the record."""
    histogram: Counter[str] = Counter()
    not_automated: list[str] = []
    for path in AUTOMATED:
        verdict = automated_verdict(parse_message(path.read_bytes()), own_addresses=[MAILBOX])
        if not verdict.automated or not verdict.reasons:
            not_automated.append(path.name)
        for reason in verdict.reasons:
            assert REASON.match(reason), reason
        histogram.update(verdict.reasons)
    assert len(AUTOMATED) == 158
    assert not_automated == []
    # The figures for the record (shown with ``pytest -s``).
    print("\nautomated-mail reasons over the corpus:")  # noqa: T201
    for reason, count in histogram.most_common():
        print(f"  {count:4d}  {reason}")  # noqa: T201
    # The structural signals carry most of the corpus; none of them is a content heuristic.
    assert histogram["multipart/report"] >= 80
    assert histogram["sender:mailer-daemon"] >= 100


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("arf-22.eml", "feedback-loop:jmrp"),  # Hotmail JMRP complaint: no header signals at all
        ("lhost-dragonfly-04.eml", "from:<>"),  # "From: MAILER-DAEMON <>"
        ("lhost-dragonfly-04.eml", "sender:mailer-daemon"),
        ("rfc3834-01.eml", "auto-submitted:auto-replied"),  # a vacation reply
        ("arf-01.eml", "message/feedback-report"),
        ("lhost-exim-31.eml", "x-failed-recipients"),
    ],
)
def test_corpus_files_that_needed_a_second_look(name: str, reason: str) -> None:
    verdict = automated_verdict(parse_message((CORPUS / "automated" / name).read_bytes()))
    assert reason in verdict.reasons


POSITIVE = [
    ("Auto-Submitted: auto-replied", "auto-submitted:auto-replied"),
    ("Auto-Submitted: auto-generated; owner-email=x@y", "auto-submitted:auto-generated"),
    ("Auto-Submitted: Auto-Notified", "auto-submitted:auto-notified"),
    ("Precedence: bulk", "precedence:bulk"),
    ("Precedence: list", "precedence:list"),
    ("Precedence: junk", "precedence:junk"),
    ("Precedence: auto_reply", "precedence:auto_reply"),
    ("Precedence: auto-reply", "precedence:auto_reply"),
    ("X-Precedence: Bulk", "precedence:bulk"),
    ("List-Id: Shop news <news.shop.example>", "list-id"),
    ("List-Unsubscribe: <mailto:unsub@news.example>", "list-unsubscribe"),
    ("X-Auto-Response-Suppress: All", "x-auto-response-suppress"),
    ("X-Autoreply: yes", "x-autoreply"),
    ("X-Autorespond: Out of office", "x-autorespond"),
    ("X-AutoResponder: vacation", "x-autoresponder"),
    ("X-Autorespond-Reason: holiday", "x-autorespond-reason"),
    ("X-Mail-Autoreply: 1", "x-mail-autoreply"),
    ("X-Loop: helpdesk@other.example", "x-loop"),
    ("X-Loop: yes", "x-loop"),
    ("Return-Path: <>", "return-path:<>"),
    ("Return-Path: < >", "return-path:<>"),
    ("X-Failed-Recipients: someone@example.org", "x-failed-recipients"),
    ("From: MAILER-DAEMON@mx.example.org", "sender:mailer-daemon"),
    ("From: Mail Delivery Subsystem <Mailer_Daemon@mx.example.org>", "sender:mailer-daemon"),
    ("From: postmaster@example.org", "sender:postmaster"),
    ("From: Shop <no-reply@news.example>", "sender:no-reply"),
    ("From: noreply+tag@news.example", "sender:no-reply"),
    ("From: do_not_reply@bank.example", "sender:no-reply"),
    ("From: DoNotReply-alerts@bank.example", "sender:no-reply"),
    ("From: bounces@lists.example", "sender:bounce"),
    ("From: list-bounces+user=x.example@lists.example", "sender:bounce"),
    ("From: bounce-123-456@esp.example", "sender:bounce"),
    ("From: mailman-admin@lists.example", "sender:*-admin"),
    ("From: devs-owner@lists.example", "sender:*-owner"),
    ("From: owner-devs@lists.example", "sender:*-owner"),
    ("From: devs-request@lists.example", "sender:*-request"),
    ("Sender: mailer-daemon@relay.example\r\nFrom: customer@example.com", "sender:mailer-daemon"),
    ("Return-Path: <bounces+123@esp.example>", "sender:bounce"),
    ("From: Mail System <>", "from:<>"),
]


@pytest.mark.parametrize(("header", "reason"), POSITIVE, ids=[p[1] + ":" + p[0] for p in POSITIVE])
def test_rule_fires(header: str, reason: str) -> None:
    verdict = _verdict(header + "\r\n")
    assert verdict.automated
    assert reason in verdict.reasons


NEGATIVE = [
    "Auto-Submitted: no",
    "Auto-Submitted: No (written by hand)",
    "X-Mailer: Microsoft Outlook 16.0",
    "User-Agent: Mozilla Thunderbird",
    "X-Priority: 1 (Highest)",
    "Importance: high",
    "Priority: urgent",
    "Return-Path: <customer@example.com>",
    "Precedence: first-class",
    "Precedence: normal",
    "In-Reply-To: <ack-1042@shop.test>\r\nReferences: <ack-1042@shop.test>",
    "From: Bouncer Fan <bouncer@example.com>",  # "bounce" only as a whole word
    "From: admin@example.com",  # a plain admin is a person; only "*-admin" is list software
    "From: owner@example.com",
    "From: requests@example.com",
    "From: noreplyx@example.com",
    "From: Daemon Hunter <daemon@example.com>",
    "From: postmistress@example.com",
    "X-Autoresponse-Test-Ignored: 1",  # not X-Autorespond*
    # Everything a careful customer's client may send at once.
    "Auto-Submitted: no\r\nX-Mailer: Apple Mail (2.3654)\r\nX-Priority: 3\r\n"
    "Importance: normal\r\nReturn-Path: <customer@example.com>\r\nX-MSMail-Priority: Normal",
    "Content-Type: multipart/mixed; boundary=b",
]


@pytest.mark.parametrize("header", NEGATIVE)
def test_ordinary_mail_is_not_automated(header: str) -> None:
    body = "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--" if "boundary=b" in header else "hi"
    verdict = _verdict(header + "\r\n", body)
    assert verdict == Verdict(automated=False, reasons=())


@pytest.mark.parametrize("part", ["message/delivery-status", "message/feedback-report"])
def test_report_parts_anywhere(part: str) -> None:
    """A report part nested inside multipart/mixed (not under multipart/report) still counts."""
    headers = 'Content-Type: multipart/mixed; boundary="o"\r\n'
    body = (
        "--o\r\nContent-Type: text/plain\r\n\r\nnotice\r\n"
        f"--o\r\nContent-Type: {part}\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n--o--"
    )
    verdict = _verdict(headers, body)
    assert verdict.reasons == (part,)


def test_multipart_report() -> None:
    headers = 'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n'
    body = (
        "--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n--r--"
    )
    assert _verdict(headers, body).reasons == ("multipart/report", "message/delivery-status")


def test_own_address_message_id_and_sent_label() -> None:
    """Our own mail: by address (case-insensitive), by one of our Message-IDs, by SENT."""
    ours = _verdict("From: Support <Support@Shop.Test>\r\n", own_addresses=["support@shop.test"])
    assert ours.reasons == ("own-address",)
    echoed = _verdict("", own_message_ids=["m1@customer.example"])
    assert echoed.reasons == ("own-message-id",)
    sent = _verdict("", label_ids=["SENT", "INBOX"])
    assert sent.reasons == ("sent-label",)
    customer = _verdict("", own_addresses=[MAILBOX], own_message_ids=["x@shop.test"])
    assert not customer.automated


def test_every_reason_is_reported_once_in_rule_order() -> None:
    verdict = _verdict(
        "Auto-Submitted: auto-replied\r\nAuto-Submitted: auto-replied\r\n"
        "Precedence: bulk\r\nList-Id: <l.example>\r\nReturn-Path: <>\r\n"
    )
    assert verdict.reasons == (
        "auto-submitted:auto-replied",
        "precedence:bulk",
        "list-id",
        "return-path:<>",
    )


def test_generated_customer_mail_is_not_automated() -> None:
    """200 generated customer threads (all clients, charsets, X-Mailer, X-Priority, Importance,
    Auto-Submitted: no): no customer message is automated; every agent reply is ours."""
    conversations = generate_conversations(
        200, seed=5, start=datetime(2025, 11, 17, tzinfo=UTC), agent_replies=True
    )
    seen_headers: Counter[str] = Counter()
    agent_replies = 0
    for conversation in conversations:
        for message in conversation.messages:
            parsed = parse_message(message.raw)
            seen_headers.update(h for h in CLIENT_HEADERS if h in parsed.headers)
            labels = ["SENT"] if message.from_agent else ["INBOX", "UNREAD"]
            verdict = automated_verdict(parsed, own_addresses=[MAILBOX], label_ids=labels)
            if message.from_agent:
                agent_replies += 1
                assert verdict.reasons == ("own-address", "sent-label")
            else:
                assert verdict == Verdict(automated=False, reasons=()), message.client
    assert agent_replies > 0
    assert min(seen_headers[h] for h in ("x-mailer", "x-priority", "importance")) > 0
    assert seen_headers["auto-submitted"] > 0


def _with_message_id(message_id: str, extra: str = "") -> Verdict:
    raw = (
        "From: Other Helpdesk <help@other.example>\r\nTo: support@shop.test\r\n"
        f"Subject: Re: Order [#1042]\r\nMessage-ID: {message_id}\r\n{extra}\r\nThanks\r\n"
    ).encode()
    return automated_verdict(parse_message(raw), own_addresses=[MAILBOX])


def test_our_signed_message_id_is_ours_wherever_it_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Message-ID with our HMAC (app/acknowledgements/signing.py) is our own mail even with no
    other signal and no outbox row — another of our mailboxes, or a forwarder that stripped
    Auto-Submitted, sent it back. A forged id of the same form and a customer's reply that only
    references ours are not."""
    monkeypatch.setenv("INBOXDESK_SECRET_KEY", "test-secret-for-the-verdict")
    reset_settings()
    try:
        ours = ack_message_id(ticket_id=1042, domain="shop.test")
        assert _with_message_id(ours).reasons == ("own-message-id",)
        assert _with_message_id(ours.replace("<ack.1042.", "<ack.1043.")).automated is False
        assert _with_message_id(f"<ack.1042.{'a' * 24}@shop.test>").automated is False
        reply = _with_message_id("<r1@other.example>", f"In-Reply-To: {ours}\r\n")
        assert reply == Verdict(automated=False, reasons=())
    finally:
        monkeypatch.delenv("INBOXDESK_SECRET_KEY")
        reset_settings()
