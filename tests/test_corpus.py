"""``gmail_sync.corpus``: generated customer conversations are realistic and self-consistent —
they parse without a single defect into exactly the values they were generated from, thread by
their headers, vary over languages, charsets, encodings, clients and time zones, and are the
same bytes under the same seed. The committed demo mail is what ``write_demo_corpus`` writes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from gmail_sync.corpus import (
    DEMO_SEED,
    DEMO_START,
    Conversation,
    arrival_order,
    generate_conversations,
    write_demo_corpus,
)
from gmail_sync.parse import normalize_subject, parse_message

START = datetime(2025, 11, 17, 6, 0, tzinfo=UTC)
MAILBOX = "support@shop.test"
DEMO_DIR = Path(__file__).resolve().parents[1] / "gmail_sync" / "demo_mail"


@pytest.fixture(scope="module")
def conversations() -> list[Conversation]:
    return generate_conversations(200, seed=42, mailbox=MAILBOX, start=START)


def test_every_message_round_trips(conversations: list[Conversation]) -> None:
    """Each of the ~360 messages parses without defects into its own subject, customer, text,
    date (with the sender's offset), recipients and attachments."""
    count = 0
    for conversation in conversations:
        for message in conversation.messages:
            parsed = parse_message(message.raw)
            label = f"{message.client}/{message.charset}/{message.transfer_encoding}"
            assert parsed.defects == (), label
            assert parsed.subject == message.subject, label
            assert parsed.from_address == conversation.customer_email == message.from_address
            assert parsed.from_name == conversation.customer_name, label
            assert parsed.to == (MAILBOX,)
            assert parsed.text == message.text, label
            assert parsed.date == message.date
            assert parsed.utc_offset_minutes == conversation.utc_offset_minutes
            assert parsed.message_id == message.message_id
            got = [(a.filename, a.content_type, a.size) for a in parsed.attachments]
            assert got == [(a.filename, a.content_type, a.size) for a in message.attachments]
            has_html = message.client in ("gmail", "outlook", "yandex", "zoho")
            assert (parsed.html is not None) == has_html, label
            count += 1
    assert count >= 300


def test_threading_headers_chain(conversations: list[Conversation]) -> None:
    """Message k replies to k-1 and references all earlier ones in order; replies carry "Re:";
    every subject of a thread normalises to the first one's."""
    for conversation in conversations:
        first, *rest = conversation.messages
        assert (first.in_reply_to, first.references) == (None, ())
        assert first.subject == conversation.subject
        for index, message in enumerate(rest, start=1):
            earlier = conversation.messages[:index]
            parsed = parse_message(message.raw)
            assert parsed.in_reply_to == (earlier[-1].message_id,)
            assert parsed.references == tuple(m.message_id for m in earlier)
            assert parsed.subject.lower().startswith("re: ")
            assert normalize_subject(parsed.subject) == normalize_subject(conversation.subject)
            assert message.date > earlier[-1].date


def test_conversations_are_distinct_tickets(conversations: list[Conversation]) -> None:
    """Distinct customers, distinct normalised subjects, globally unique Message-IDs."""
    customers = [c.customer_email for c in conversations]
    subjects = [normalize_subject(c.subject) for c in conversations]
    ids = [m.message_id for c in conversations for m in c.messages]
    assert len(set(customers)) == len(customers) == 200
    assert len(set(subjects)) == len(subjects)
    assert len(set(ids)) == len(ids)
    assert MAILBOX not in customers


def test_variety(conversations: list[Conversation]) -> None:
    """Russian and English; UTF-8, KOI8-R, Windows-1251; QP, base64 and 8-bit; HTML-only mail,
    attachments, several clients, senders from -08:00 to +12:00; 1 to 4 messages a thread."""
    messages = [m for c in conversations for m in c.messages]
    languages = Counter(c.language for c in conversations)
    assert min(languages["ru"], languages["en"]) >= 60
    charsets = {m.charset for m in messages}
    assert {"utf-8", "koi8-r", "windows-1251"} <= charsets
    assert {"quoted-printable", "base64", "8bit"} <= {m.transfer_encoding for m in messages}
    assert sum(m.html_only for m in messages) >= 20
    assert sum(bool(m.attachments) for m in messages) >= 10
    assert any(not a.filename.isascii() for m in messages for a in m.attachments)
    assert len({m.client for m in messages}) >= 7
    offsets = {c.utc_offset_minutes for c in conversations}
    assert {180, 720, -300, -480, 330} <= offsets
    assert {len(c) for c in conversations} == {1, 2, 3, 4}
    mailers = set()
    for m in messages:
        parsed = parse_message(m.raw)
        mailers.update(parsed.headers.get("x-mailer", ()) + parsed.headers.get("user-agent", ()))
    assert any("Outlook" in x for x in mailers)
    assert any("Thunderbird" in x for x in mailers)
    assert any("Apple Mail" in x for x in mailers)
    raw_koi8 = [m.raw for m in messages if m.charset == "koi8-r"]
    assert any(b"=?koi8-r?" in r for r in raw_koi8)


def test_deterministic_under_seed() -> None:
    one = generate_conversations(30, seed=9, start=START, agent_replies=True)
    two = generate_conversations(30, seed=9, start=START, agent_replies=True)
    other = generate_conversations(30, seed=10, start=START, agent_replies=True)
    assert [c.raw_messages for c in one] == [c.raw_messages for c in two]
    assert [c.raw_messages for c in one] != [c.raw_messages for c in other]


def test_agent_replies_are_marked_and_threaded() -> None:
    """With agent replies: they come from the mailbox, reply within the thread, and the
    customer's next message quotes and references them."""
    convs = generate_conversations(80, seed=3, mailbox=MAILBOX, start=START, agent_replies=True)
    agent = [(c, i) for c in convs for i, m in enumerate(c.messages) if m.from_agent]
    assert len(agent) >= 10
    for conversation, index in agent:
        message = conversation.messages[index]
        assert index > 0
        parsed = parse_message(message.raw)
        assert (parsed.from_address, parsed.to) == (MAILBOX, (conversation.customer_email,))
        assert parsed.in_reply_to == (conversation.messages[index - 1].message_id,)
        assert parsed.defects == ()
        assert parsed.text == message.text
    assert all(not c.messages[0].from_agent for c in convs)
    plain = generate_conversations(80, seed=3, start=START)
    assert not any(m.from_agent for c in plain for m in c.messages)


def test_arrival_order_interleaves_threads(conversations: list[Conversation]) -> None:
    ordered = arrival_order(conversations)
    instants = [m.date.astimezone(UTC) for m in ordered]
    assert instants == sorted(instants)
    assert len(ordered) == sum(len(c) for c in conversations)
    owners = {m.message_id: i for i, c in enumerate(conversations) for m in c.messages}
    pairs = pairwise(ordered)
    switches = sum(owners[a.message_id] > owners[b.message_id] for a, b in pairs)
    assert switches > 0, "some follow-up arrives after a later conversation began"


def test_naive_start_means_utc() -> None:
    naive = generate_conversations(3, seed=1, start=START.replace(tzinfo=None))
    aware = generate_conversations(3, seed=1, start=START)
    assert [c.raw_messages for c in naive] == [c.raw_messages for c in aware]
    assert aware[0].messages[0].date.astimezone(UTC) - START < timedelta(hours=2)


def test_committed_demo_mail_is_current(tmp_path: Path) -> None:
    """gmail_sync/demo_mail holds exactly what write_demo_corpus writes (regenerate it with
    ``python -c 'from gmail_sync.corpus import write_demo_corpus as w; w("gmail_sync/demo_mail")'``
    after changing the generator): ~30 conversations, file names sorted in arrival order."""
    written = write_demo_corpus(tmp_path)
    committed = sorted(DEMO_DIR.glob("*.eml"))
    assert [p.name for p in committed] == [p.name for p in written]
    for mine, fresh in zip(committed, written, strict=True):
        assert mine.read_bytes() == fresh.read_bytes(), mine.name
    parsed = [parse_message(p.read_bytes()) for p in committed]
    dates = [p.date for p in parsed]
    assert all(d is not None for d in dates)
    assert dates == sorted(dates)  # type: ignore[type-var]
    threads = {normalize_subject(p.subject) for p in parsed}
    assert len(threads) == 30
    assert all(p.from_address and p.from_address != MAILBOX for p in parsed)
    assert all(p.defects == () for p in parsed)


def test_demo_shows_the_variety() -> None:
    """The demo's 30 conversations: both languages, every client, KOI8-R and Windows-1251 next
    to UTF-8, HTML-only mail and attachments."""
    conversations = generate_conversations(30, seed=DEMO_SEED, start=DEMO_START)
    messages = [m for c in conversations for m in c.messages]
    assert {c.language for c in conversations} == {"ru", "en"}
    assert len({m.client for m in messages}) == 8
    assert {"utf-8", "koi8-r", "windows-1251"} <= {m.charset for m in messages}
    assert any(m.html_only for m in messages)
    assert any(m.attachments for m in messages)


def test_demo_writer_replaces_only_its_own_files(tmp_path: Path) -> None:
    (tmp_path / "999-stale.eml").write_bytes(b"old")
    (tmp_path / "README").write_text("keep me")
    written = write_demo_corpus(tmp_path, n=3)
    assert not (tmp_path / "999-stale.eml").exists()
    assert (tmp_path / "README").read_text() == "keep me"
    assert sorted(tmp_path.glob("*.eml")) == written
