"""``gmail_sync.parse``: real automated mail and hand-built MIME (real bytes in KOI8-R,
Windows-1251, ISO-8859-5, UTF-8) parse into the right facts, and broken mail parses too — with
what was wrong recorded in ``defects`` — instead of raising."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmail_sync.parse import ParsedMessage, html_to_text, normalize_subject, parse_message
from tests.conftest import CORPUS

AUTOMATED = sorted((CORPUS / "automated").glob("*.eml"))
CRLF = compat32.clone(linesep="\r\n")
RUSSIAN = "Здравствуйте! Заказ 4821 не пришёл, посылка ещё в пути.\nС уважением,\nЁжиков Пётр"


def _text_message(
    body: str,
    charset: str,
    cte: str | None,
    *,
    subject: str = "Hello",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A text/plain message built by the email package: body in ``charset`` with ``cte``
    (None = 8bit), the other headers as given (already encoded)."""
    cs = Charset(charset)
    cs.body_encoding = {"qp": QP, "base64": BASE64, None: None}[cte]
    msg = MIMEText(body, "plain", cs)
    msg["From"] = "Customer <customer@example.com>"
    msg["To"] = "support@shop.test"
    msg["Subject"] = subject
    msg["Message-ID"] = "<m1@example.com>"
    msg["Date"] = "Mon, 17 Nov 2025 10:00:00 +0300"
    for name, value in (headers or {}).items():
        msg[name] = value
    return msg.as_bytes(policy=CRLF)


def _valid_strings(parsed: ParsedMessage) -> None:
    """Every string the parser returns can be stored: UTF-8 encodable, no NUL."""
    values: list[str] = [parsed.subject, parsed.text, parsed.html or ""]
    values += [parsed.from_address or "", parsed.from_name or "", parsed.message_id or ""]
    values += [*parsed.to, *parsed.cc, *parsed.references, *parsed.in_reply_to, *parsed.defects]
    values += [a.filename or "" for a in parsed.attachments]
    values += [v for vs in parsed.headers.values() for v in vs] + list(parsed.headers)
    for value in values:
        assert "\x00" not in value
        value.encode("utf-8")  # raises on lone surrogates


# --------------------------------------------------------------------------- the real corpus


@pytest.mark.parametrize("path", AUTOMATED, ids=lambda p: p.name)
def test_every_corpus_message_parses(path: Path) -> None:
    """The 158 real automated messages parse without exception into storable values."""
    parsed = parse_message(path.read_bytes())
    assert not any(d.startswith("parse-failed") for d in parsed.defects)
    assert parsed.subject or parsed.text or parsed.attachments
    assert parsed.headers, "the header block was read"
    _valid_strings(parsed)


def test_corpus_is_complete() -> None:
    assert len(AUTOMATED) == 158


_HEADER_ID = re.compile(rb"(?im)^[ \t>]*message-id[ \t]*:\s*<([^<>\s]+)>")


def test_bounces_name_the_original_message() -> None:
    """Where a corpus file carries the original message's Message-ID (message/rfc822 part,
    text/rfc822-headers, a report's fields, or headers quoted in the text), it is in
    ``embedded_message_ids``: all 128 files where it is visible in the raw bytes, plus one whose
    quoted headers are inside a base64 body — 129 of the 158."""
    carrying = with_ids = 0
    missed: dict[str, set[str]] = {}
    for path in AUTOMATED:
        raw = path.read_bytes()
        parsed = parse_message(raw)
        own = {i.strip("<> \t") for i in parsed.headers.get("message-id", ())}
        foreign = {m.decode("ascii", "replace") for m in _HEADER_ID.findall(raw)} - own
        if foreign:
            carrying += 1
            if not foreign <= set(parsed.embedded_message_ids):
                missed[path.name] = foreign - set(parsed.embedded_message_ids)
        with_ids += bool(parsed.embedded_message_ids)
        assert parsed.message_id not in parsed.embedded_message_ids
    assert missed == {}
    assert (carrying, with_ids) == (128, 129)


def test_bounce_embedded_ids_by_format() -> None:
    """One bounce of each carrying format yields exactly the original's id."""
    cases = {
        "lhost-postfix-14.eml": "20150213024813.DE9FF20C16@2jo.example.jp",  # message/rfc822
        "lhost-opensmtpd-10.eml": "74f4e3b183602776@df.example.jp",  # text/rfc822-headers
        "lhost-qmail-01.eml": "000000000.9999999999999.JavaMail.postmaster@mailhub",  # inline text
        "lhost-bigfoot-02.eml": "2015042923344500.neko.nyaan@smtp.r3.example.com",  # msg/partial
        "lhost-x6-01.eml": "68b329da9893e34099c7d8ad5cb9c940@x6.example.co.jp",  # .txt attachment
        "lhost-mfilter-05.eml": "000000000211.222222222000@localhost",  # inside a base64 body
        "lhost-office365-12.eml": (  # the original's header block cut short by a bad fold
            "SLXP216MB03814587D983866DA15F34A9A9250@SLXP216MB0381.KORP216.PROD.OUTLOOK.COM"
        ),
        "arf-18.eml": "000000002.2222222.1500000000022@example.net",  # ARF message/rfc822
    }
    for name, original in cases.items():
        parsed = parse_message((CORPUS / "automated" / name).read_bytes())
        assert original in parsed.embedded_message_ids, name


def test_corpus_bounce_facts() -> None:
    """A Postfix bounce: sender, date with its offset, report structure, text and attachment."""
    parsed = parse_message((CORPUS / "automated" / "lhost-postfix-14.eml").read_bytes())
    assert parsed.from_address == "mailer-daemon@2jo.example.jp"
    assert parsed.subject == "Undelivered Mail Returned to Sender"
    assert parsed.date == datetime(2015, 2, 13, 2, 48, 13, tzinfo=UTC)
    assert {"multipart/report", "message/delivery-status", "message/rfc822"} <= parsed.part_types
    assert 'unknown user: "kijitora"' in parsed.text
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"]
    assert parsed.attachments[0].size > 100


def test_corpus_russian_bounce_subject() -> None:
    parsed = parse_message((CORPUS / "automated" / "lhost-yandex-01.eml").read_bytes())
    assert parsed.subject == "Недоставленное сообщение"
    assert parsed.utc_offset_minutes == 180


def test_null_sender_keeps_the_display_name() -> None:
    """'From: MAILER-DAEMON <>' has no address; the name survives, and it is a defect."""
    parsed = parse_message((CORPUS / "automated" / "lhost-dragonfly-04.eml").read_bytes())
    assert parsed.from_address is None
    assert parsed.from_name == "MAILER-DAEMON"
    assert "header:from-without-address" in parsed.defects


def test_mislabelled_japanese_charset_in_a_real_bounce() -> None:
    """An EZweb bounce labels EUC-JP text as ISO-2022-JP: decoded as EUC-JP, noted."""
    parsed = parse_message((CORPUS / "automated" / "lhost-ezweb-02.eml").read_bytes())
    assert "body:charset-mismatch:iso2022_jp_ext->euc_jp" in parsed.defects
    assert "メール" in parsed.text or "受信" in parsed.text


# --------------------------------------------------------------------------- charsets


@pytest.mark.parametrize("charset", ["koi8-r", "windows-1251", "utf-8", "iso-8859-5"])
@pytest.mark.parametrize("cte", [None, "qp", "base64"], ids=["8bit", "qp", "base64"])
def test_russian_body_in_every_charset_and_encoding(charset: str, cte: str | None) -> None:
    raw = _text_message(RUSSIAN, charset, cte)
    if cte is None:  # the real bytes travel
        assert RUSSIAN.replace("\n", "\r\n").encode(charset) in raw
    parsed = parse_message(raw)
    assert parsed.text == RUSSIAN
    assert parsed.defects == ()


@pytest.mark.parametrize(
    ("charset", "encoding"),
    [("koi8-r", "B"), ("windows-1251", "Q"), ("utf-8", "B"), ("iso-8859-5", "Q")],
)
def test_encoded_word_subject_and_name(charset: str, encoding: str) -> None:
    subject = "Заказ 4821 не пришёл"
    cs = Charset(charset)
    cs.header_encoding = BASE64 if encoding == "B" else QP
    raw = _text_message(
        "x",
        "utf-8",
        None,
        subject=Header(subject, cs).encode(),
        headers={"Cc": Header("Пётр Ёжиков", cs).encode() + " <Petr@Example.RU>"},
    )
    assert f"=?{charset}?{encoding.lower()}?".encode() in raw.lower()
    parsed = parse_message(raw)
    assert parsed.subject == subject
    assert parsed.cc == ("petr@example.ru",)
    assert parsed.headers["cc"] == ("Пётр Ёжиков <Petr@Example.RU>",)


@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [
        # adjacent words: the whitespace between them vanishes (RFC 2047 §6.2)
        ("=?utf-8?B?0JfQsNC6?= =?utf-8?B?0LDQtw==?=", "Заказ"),
        # a UTF-8 character split across two words is joined before decoding
        ("=?utf-8?B?0JfQsNC60LDQ?= =?utf-8?B?tyDQvdC1?=", "Заказ не"),
        # mixed charsets in one header, each word its own
        ("=?koi8-r?B?+sHLwdo=?= =?windows-1251?Q?=ED=E5?= =?utf-8?Q?=D0=BF=D1=80?=", "Заказнепр"),
        # a word next to plain text keeps the text's spaces
        ("Re: =?utf-8?Q?=D0=97=D0=B0=D0=BA=D0=B0=D0=B7?= 4821 ok", "Re: Заказ 4821 ok"),
        # Q encoding: underscore is a space; lower-case q; RFC 2231 language suffix
        ("=?UTF-8?q?Hello_world?= =?utf-8*en?Q?!?=", "Hello world!"),
        # folded across lines
        ("=?utf-8?B?0JfQsNC60LDQtw==?=\r\n =?utf-8?B?INC90LU=?=", "Заказ не"),
        # inside quotes (not allowed, very common)
        ('"=?utf-8?B?0JjQstCw0L0=?=" <ivan@example.com>', '"Иван" <ivan@example.com>'),
        # no padding in B, a word with an unknown charset degrades to a guess
        ("=?utf-8?B?0JjQstCw0L0?=", "Иван"),
        ("=?x-unknown?Q?caf=C3=A9?=", "café"),
    ],
)
def test_encoded_words(raw_value: str, expected: str) -> None:
    raw = b"From: a@example.com\r\nSubject: " + raw_value.encode() + b"\r\n\r\nbody\r\n"
    assert parse_message(raw).subject == expected


def test_8bit_raw_headers_utf8_and_cp1251() -> None:
    """Raw 8-bit bytes in headers (no encoded words): UTF-8 as RFC 6532 allows, a legacy
    Cyrillic charset guessed and noted."""
    utf8 = "Subject: Заказ не пришёл\r\nFrom: Пётр <p@example.com>\r\n\r\nx\r\n".encode()
    parsed = parse_message(utf8)
    assert (parsed.subject, parsed.from_name) == ("Заказ не пришёл", "Пётр")
    assert parsed.defects == ()
    cp1251 = b"Subject: " + "Заказ не пришёл".encode("cp1251") + b"\r\nFrom: p@example.com\r\n\r\n"
    parsed = parse_message(cp1251)
    assert parsed.subject == "Заказ не пришёл"
    assert "header:8bit:subject:cp1251" in parsed.defects


@pytest.mark.parametrize(
    ("declared", "actual", "defect"),
    [
        ("utf-8", "cp1251", "body:charset-mismatch:utf-8->cp1251"),
        ("utf-8", "koi8-r", "body:charset-mismatch:utf-8->koi8_r"),
        ("us-ascii", "koi8-r", "body:8bit-in-ascii:koi8_r"),
        ("iso-8859-1", "utf-8", "body:charset-mislabelled:iso8859-1->utf-8"),
        ("x-unknown", "utf-8", "body:unknown-charset:x-unknown"),
        ("x-unknown", "cp1251", "body:unknown-charset:x-unknown"),
    ],
)
def test_mislabelled_body_charset_falls_back_sanely(
    declared: str, actual: str, defect: str
) -> None:
    """A lying or unknown charset label: the text still comes out right, the lie is recorded."""
    body = RUSSIAN.encode(actual).replace(b"\n", b"\r\n")
    raw = (
        b"From: c@example.com\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=" + declared.encode() + b"\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + body
    )
    parsed = parse_message(raw)
    assert parsed.text == RUSSIAN
    assert defect in parsed.defects


def test_koi8r_and_cp1251_are_told_apart() -> None:
    """Unlabelled Cyrillic bytes: KOI8-R and Windows-1251 swap upper and lower case; the guess
    picks the reading with mostly lower-case letters."""
    for charset in ("koi8-r", "cp1251"):
        raw = b"From: c@example.com\r\n\r\n" + RUSSIAN.encode(charset)
        assert parse_message(raw).text == RUSSIAN


# --------------------------------------------------------------------------- structure


def test_plain_text_is_preferred_over_html() -> None:
    msg = EmailMessage()
    msg["From"] = "c@example.com"
    msg.set_content("Plain version")
    msg.add_alternative("<p>HTML <b>version</b></p>", subtype="html")
    parsed = parse_message(msg.as_bytes())
    assert parsed.text == "Plain version"
    assert parsed.html is not None
    assert "<b>version</b>" in parsed.html
    assert parsed.part_types == {"multipart/alternative", "text/plain", "text/html"}


def test_html_only_mail_becomes_text() -> None:
    msg = EmailMessage()
    msg["From"] = "c@example.com"
    html = "<html><body><div>Привет&nbsp;мир</div><div><br></div><p>Заказ &#8470;5 &amp; всё</p>"
    msg.set_content(html + "<script>steal()</script></body></html>", subtype="html", cte="base64")
    parsed = parse_message(msg.as_bytes())
    assert parsed.text == "Привет мир\n\nЗаказ №5 & всё"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<p>one</p><p>two</p>", "one\n\ntwo"),
        ("<div>one</div><div>two</div>", "one\ntwo"),
        ('<div dir="ltr">x<div><br></div><div>y</div></div>', "x\n\ny"),
        ("<ul><li>a</li><li>b</li></ul>", "- a\n- b"),
        ("<ol><li>a</li><li>b</li></ol>", "1. a\n2. b"),
        ("<style>p {color: red}</style><script>x()</script>shown", "shown"),
        ("<head><title>T</title></head><body>body</body>", "body"),
        ("a &amp; b &lt;c&gt; &quot;d&quot; &#1055; &eacute;", 'a & b <c> "d" П é'),
        ("  lots   of\n\n  space  ", "lots of space"),
        ("<pre>keep\n  this</pre>", "keep\n  this"),
        ("<p class=MsoNormal>l1<o:p></o:p></p><p class=MsoNormal>l2</p>", "l1\nl2"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a\tb\nc"),
        ("<![if !supportLists]>x<![endif]>", "x"),
        ("unclosed <b>bold <i>and <div>block", "unclosed bold and\nblock"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_attachments_with_rfc2231_and_encoded_word_names() -> None:
    """Attachment metadata: names in RFC 2231 (UTF-8, KOI8-R, with continuations) and in RFC 2047
    words; decoded sizes; inline parts with names count; text stays the body."""
    outer = MIMEMultipart("mixed")
    outer["From"] = "c@example.com"
    outer.attach(MIMEText("See attached", "plain", "utf-8"))
    pdf = MIMEApplication(b"%PDF-1.4 " + bytes(range(256)) * 4, "pdf")
    pdf.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "Счёт 4821.pdf"))
    outer.attach(pdf)
    jpg = MIMEImage(b"\xff\xd8\xff\xe0" + b"\x00" * 996, "jpeg")
    jpg.add_header("Content-Disposition", "inline", filename=("koi8-r", "ru", "фото.jpg"))
    outer.attach(jpg)
    long_name = "Очень длинное имя файла накладной по заказу номер 4821 от ноября.xlsx"
    xls = MIMEApplication(b"PK\x03\x04" + b"z" * 96, "octet-stream")
    xls.add_header("Content-Disposition", "attachment", filename=("utf-8", "", long_name))
    outer.attach(xls)
    word = MIMEApplication(b"data", "octet-stream")
    word.add_header("Content-Disposition", "attachment")
    word.set_param("name", Header("Договор.docx", "utf-8").encode())
    outer.attach(word)
    raw = outer.as_bytes(policy=CRLF)
    assert b"filename*=" in raw or b"filename*0*=" in raw
    parsed = parse_message(raw)
    assert parsed.text == "See attached"
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("Счёт 4821.pdf", "application/pdf", 9 + 1024),
        ("фото.jpg", "image/jpeg", 1000),
        (long_name, "application/octet-stream", 100),
        ("Договор.docx", "application/octet-stream", 4),
    ]


def test_rfc2231_continuations_written_by_hand() -> None:
    raw = (
        b"From: c@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=utf-8''%D0%A7%D0%B5%D0%BA;\r\n"
        b" filename*1*=%20%E2%84%965.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"AAECAwQ=\r\n--b--\r\n"
    )
    (attachment,) = parse_message(raw).attachments
    assert (attachment.filename, attachment.size) == ("Чек №5.pdf", 5)


def test_text_attachment_is_not_body() -> None:
    outer = MIMEMultipart("mixed")
    outer["From"] = "c@example.com"
    outer.attach(MIMEText("Body text", "plain", "utf-8"))
    log = MIMEText("log line\n" * 3, "plain", "utf-8")
    log.add_header("Content-Disposition", "attachment", filename="app.log")
    outer.attach(log)
    parsed = parse_message(outer.as_bytes())
    assert parsed.text == "Body text"
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [("app.log", "text/plain")]


def test_format_flowed_is_unwrapped() -> None:
    """RFC 3676: soft line breaks (trailing space) join; quotes keep their depth; space-stuffing
    is removed; the signature separator stays; DelSp=yes drops the space."""
    body = (
        "This is a long line that \r\nwas wrapped by the client.\r\n \r\n From here on\r\n"
        "> quoted text that \r\n> goes on\r\n>> deeper\r\n-- \r\nSig\r\n"
    )
    raw = (
        "From: c@example.com\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
        + body
    ).encode()
    assert parse_message(raw).text == (
        "This is a long line that was wrapped by the client.\n\nFrom here on\n"
        "> quoted text that goes on\n>> deeper\n-- \nSig"
    )
    raw = (
        b"From: c@example.com\r\nContent-Type: text/plain; format=flowed; delsp=yes\r\n\r\n"
        b"split\xe2\x80\x8b \r\nword\r\n"
    )
    assert parse_message(raw).text == "split\u200bword"


# --------------------------------------------------------------------------- ids, dates, addresses


def test_threading_ids() -> None:
    raw = (
        b"From: c@example.com\r\nMessage-ID: <abc@host>\r\n"
        b"In-Reply-To: <parent@host> (Your message of Monday)\r\n"
        b"References: <root@host>\r\n\t<mid@host> <parent@host>\r\n <root@host>\r\n\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.message_id == "abc@host"
    assert parsed.in_reply_to == ("parent@host",)
    assert parsed.references == ("root@host", "mid@host", "parent@host")


def test_message_id_without_brackets() -> None:
    parsed = parse_message(b"From: c@example.com\r\nMessage-Id: naked@host\r\n\r\n")
    assert parsed.message_id == "naked@host"


@pytest.mark.parametrize(
    ("value", "expected", "offset"),
    [
        ("Mon, 17 Nov 2025 10:00:00 +0300", datetime(2025, 11, 17, 7, tzinfo=UTC), 180),
        ("Tue, 18 Nov 2025 09:15:30 +1200", datetime(2025, 11, 17, 21, 15, 30, tzinfo=UTC), 720),
        ("17 Nov 2025 10:00 -0500", datetime(2025, 11, 17, 15, tzinfo=UTC), -300),
        ("Mon, 17 Nov 2025 10:00:00 +0530 (IST)", datetime(2025, 11, 17, 4, 30, tzinfo=UTC), 330),
        ("Mon, 17 Nov 2025 10:00:00 GMT", datetime(2025, 11, 17, 10, tzinfo=UTC), 0),
        ("Mon, 17 Nov 2025 10:00:00 -0000", datetime(2025, 11, 17, 10, tzinfo=UTC), 0),
        ("Mon, 17 Nov 25 10:00:00 EST", datetime(2025, 11, 17, 15, tzinfo=UTC), -300),
    ],
)
def test_date_keeps_the_senders_offset(value: str, expected: datetime, offset: int) -> None:
    parsed = parse_message(f"From: c@example.com\r\nDate: {value}\r\n\r\n".encode())
    assert parsed.date == expected
    assert parsed.utc_offset_minutes == offset
    assert parsed.date is not None
    assert parsed.date.utcoffset() == timedelta(minutes=offset)
    assert parsed.defects == ()


@pytest.mark.parametrize(
    ("value", "defect"),
    [
        ("yesterday at noon", "date:unparseable"),
        ("Mon, 45 Nov 2025 10:00:00 +0300", "date:out-of-range"),
        ("Mon, 17 Nov 2025 10:00:00 +9900", "date:bad-offset"),
        ("Mon, 17 Nov 2025 10:00:00 XYZ", "date:unknown-zone"),
    ],
)
def test_garbage_dates_are_defects(value: str, defect: str) -> None:
    parsed = parse_message(f"From: c@example.com\r\nDate: {value}\r\n\r\n".encode())
    assert defect in parsed.defects
    if defect in ("date:unparseable", "date:out-of-range"):
        assert parsed.date is None
        assert parsed.utc_offset_minutes is None
    else:
        assert parsed.date is not None
        assert parsed.date.tzinfo is not None


def test_addresses_are_lower_cased_and_named() -> None:
    raw = (
        b'From: "=?utf-8?B?0JjQstCw0L0g0J/QtdGC0YDQvtCy?=" <Ivan.Petrov@Example.RU>\r\n'
        b"To: Support <SUPPORT@shop.test>, undisclosed-recipients:;\r\n"
        b"Cc: a@example.com, Team: b@example.com, C@Example.com;\r\n"
        b"Reply-To: <Replies@Example.RU>\r\n\r\n"
    )
    parsed = parse_message(raw)
    assert (parsed.from_address, parsed.from_name) == ("ivan.petrov@example.ru", "Иван Петров")
    assert parsed.to == ("support@shop.test",)
    assert parsed.cc == ("a@example.com", "b@example.com", "c@example.com")
    assert parsed.reply_to == ("replies@example.ru",)


def test_headers_keep_every_occurrence() -> None:
    raw = b"Received: one\r\nReceived: two\r\nX-Thing: =?utf-8?Q?=C3=A9?=\r\nFrom: a@b.c\r\n\r\n"
    headers = parse_message(raw).headers
    assert headers["received"] == ("one", "two")
    assert headers["x-thing"] == ("é",)


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    ("subject", "normalized"),
    [
        ("Order 4821 missing", "order 4821 missing"),
        ("Re: Order 4821 missing", "order 4821 missing"),
        ("RE : Order  4821\tmissing", "order 4821 missing"),
        ("Re[2]: Re: Fwd: FW: order 4821 missing", "order 4821 missing"),
        ("Re(3): Re^2: x", "x"),
        ("AW: WG: SV: VS: Antw: x", "x"),
        ("Ответ: Отв: Заказ не пришёл", "заказ не пришёл"),
        ("Re: Fwd: Пересл: ЗАКАЗ", "заказ"),
        ("回复：问题", "问题"),
        ("Re: [shop-list] Re: topic", "[shop-list] topic"),
        ("[shop-list] Re: topic", "[shop-list] topic"),
        ("Re: Order 4821 missing [#1042]", "order 4821 missing [#1042]"),
        ("[#1042] Re: Order", "[#1042] order"),
        ("Regarding: the invoice", "regarding: the invoice"),
        ("Reply needed", "reply needed"),
        ("", ""),
        ("Re:", ""),
    ],
)
def test_normalize_subject(subject: str, normalized: str) -> None:
    assert normalize_subject(subject) == normalized


# --------------------------------------------------------------------------- broken mail


BROKEN: dict[str, tuple[bytes, str]] = {
    "no closing boundary": (
        b"From: a@b.c\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nstill here\r\n",
        "mime:CloseBoundaryNotFoundDefect",
    ),
    "multipart without boundary": (
        b"From: a@b.c\r\nContent-Type: multipart/mixed\r\n\r\nraw text kept\r\n",
        "mime:multipart-without-parts",
    ),
    "unknown charset": (
        b"From: a@b.c\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nplain ascii\r\n",
        "body:unknown-charset:x-unknown",
    ),
    "garbage date": (b"From: a@b.c\r\nDate: 32/13/99 25:61\r\n\r\nbody\r\n", "date:unparseable"),
    "nul bytes": (b"From: a@b.c\r\nSubject: nul\x00here\r\n\r\nbo\x00dy\r\n", "nul-bytes"),
    "8bit header": (
        b"From: a@b.c\r\nSubject: caf\xe9 cr\xe8me\r\n\r\nx\r\n",
        "header:8bit:subject",
    ),
    "bad base64": (
        b"From: a@b.c\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!notbase64@@@=\r\n",
        "mime:InvalidBase64",
    ),
    "no header/body separator": (
        b"From: a@b.c\r\nthis is not a header\r\nmore\r\n",
        "mime:MissingHeaderBodySeparatorDefect",
    ),
    "lone surrogate via utf-7": (
        b"From: a@b.c\r\nContent-Type: text/plain; charset=utf-7\r\n\r\nbad +2AA- surrogate\r\n",
        "",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_mail_parses_with_defects(case: str) -> None:
    raw, defect = BROKEN[case]
    parsed = parse_message(raw)
    _valid_strings(parsed)
    assert parsed.from_address == "a@b.c"
    if defect:
        assert any(d.startswith(defect) for d in parsed.defects), parsed.defects
    if case == "no closing boundary":
        assert parsed.text == "still here"
    if case == "multipart without boundary":
        assert parsed.text == "raw text kept"
    if case == "nul bytes":
        assert (parsed.subject, parsed.text) == ("nulhere", "body")
    if case == "8bit header":
        assert parsed.subject == "café crème"
    if case == "lone surrogate via utf-7":
        assert parsed.text == "bad \ufffd surrogate"


@pytest.mark.parametrize(
    "raw",
    [b"", b"\r\n\r\n", b"garbage", b"\xff\xfe\x00\x01" * 50, b"From:\r\nTo:\r\nDate:\r\n\r\n"],
)
def test_degenerate_input(raw: bytes) -> None:
    parsed = parse_message(raw)
    _valid_strings(parsed)
    assert parsed.from_address is None


def test_deeply_nested_multipart_is_cut_off() -> None:
    depth = 80
    head = b"From: a@b.c\r\n"
    body = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    parsed = parse_message(head + body + b"Content-Type: text/plain\r\n\r\ndeep\r\n")
    assert "mime:too-deep" in parsed.defects


_SAMPLES = [p.read_bytes() for p in AUTOMATED[::20]] + [
    _text_message(RUSSIAN, "koi8-r", "qp", subject=Header("Тема", "koi8-r").encode())
]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    sample=st.sampled_from(_SAMPLES),
    edits=st.lists(
        st.tuples(
            st.floats(0, 1),
            st.sampled_from(["flip", "cut", "insert"]),
            st.binary(min_size=1, max_size=8),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_mail_never_raises(sample: bytes, edits: list[tuple[float, str, bytes]]) -> None:
    """Random damage to real mail (flipped bytes, cuts, inserted junk) never makes the parser
    raise, and what it returns is storable."""
    data = bytearray(sample)
    for where, kind, junk in edits:
        i = int(where * max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[i] ^= junk[0] or 0x80
        elif kind == "cut":
            del data[i : i + len(junk) * 40]
        else:
            data[i:i] = junk
    _valid_strings(parse_message(bytes(data)))


def test_parsing_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """Bodies must never reach a log: the parser emits no log records at all."""
    caplog.set_level(logging.DEBUG)
    for path in AUTOMATED[:30]:
        parse_message(path.read_bytes())
    parse_message(BROKEN["bad base64"][0])
    assert caplog.records == []


def test_date_is_aware_in_the_senders_zone() -> None:
    parsed = parse_message(_text_message("x", "utf-8", None))
    assert parsed.date == datetime(2025, 11, 17, 10, tzinfo=timezone(timedelta(hours=3)))
    assert parsed.date is not None
    assert str(parsed.date.tzinfo) == "UTC+03:00"
