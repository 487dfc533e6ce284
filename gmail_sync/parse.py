"""Turn one raw RFC 822 message (Gmail's ``format=raw``) into the facts sync needs; never raises.

Real mail is broken in every possible way: 8-bit bytes in headers, charsets that do not exist or
lie, multiparts without their closing boundary, dates like "yesterday", NUL bytes. Every step here
degrades to a sane value and records what was wrong in ``ParsedMessage.defects``, so that one bad
message never stops a mailbox's sync. Pure: no I/O, no logging (bodies must never reach a log).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email import policy as email_policy
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_tz
from html import unescape as html_unescape
from html.parser import HTMLParser
from types import MappingProxyType

__all__ = [
    "Attachment",
    "ParsedMessage",
    "decode_header_value",
    "html_to_text",
    "normalize_subject",
    "parse_message",
]


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int  # decoded bytes


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    from_address: str | None
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    reply_to: tuple[str, ...]
    date: datetime | None
    utc_offset_minutes: int | None
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    headers: Mapping[str, tuple[str, ...]] = field(compare=False)
    part_types: frozenset[str]
    embedded_message_ids: tuple[str, ...]
    defects: tuple[str, ...]
    # Headers of each enclosed original message (message/rfc822 and header-only parts), decoded
    # like ``headers``: what a bounce or complaint says about the mail it is about.
    embedded_headers: tuple[Mapping[str, tuple[str, ...]], ...] = field(default=(), compare=False)


# --------------------------------------------------------------------------- strings and charsets

_SURROGATES = re.compile("[\ud800-\udfff]")


def _clean(value: str) -> str:
    """Make a string storable anywhere: no NUL (PostgreSQL text rejects it), no lone surrogates
    (they cannot be encoded as UTF-8; they come from surrogateescape'd 8-bit bytes or UTF-7)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _SURROGATES.sub("\ufffd", value)


# Names real mail uses that Python's codec registry does not know, or knows as something narrower.
_CHARSET_ALIASES = {
    "x-unicode-2-0-utf-8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "utf8mb4": "utf-8",
    "win-1251": "cp1251",
    "x-cp1251": "cp1251",
    "windows-cp1251": "cp1251",
    "cp-1251": "cp1251",
    "x-mac-cyrillic": "mac_cyrillic",
    "koi8": "koi8_r",
    "koi8r": "koi8_r",
    "iso-8859-8-i": "iso8859_8",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "x-sjis": "shift_jis",
    "shift-jis": "shift_jis",
    "gb2312": "gb18030",  # GB18030 is a superset; mislabelled GBK mail is common
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-2022-jp": "iso2022_jp_ext",  # carriers send JIS X 0201 kana under the plain label
    "us-ascii": "ascii",
    "ansi_x3.4-1968": "ascii",
    "unknown-8bit": "",
    "x-unknown": "",
    "8bit": "",
}

# Codecs of one script that mislabel each other (Japanese carriers send EUC-JP as ISO-2022-JP).
_FAMILIES = (
    ("iso2022_jp", "euc_jp", "cp932", "shift_jis"),
    ("gb18030", "big5", "big5hkscs"),
    ("cp949", "euc_kr", "iso2022_kr"),
)

# Single-byte codecs: for these, non-ASCII bytes that form valid UTF-8 betray mislabelled UTF-8.
_SINGLE_BYTE_HINT = re.compile(r"^(ascii|latin|iso8859|cp12|cp8|koi8|mac|windows|cp437|cp850)")


def _codec(charset: str | None) -> str | None:
    """Python codec name for a MIME charset label, or None if unknown."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").lower()
    label = label.split("*", 1)[0]  # RFC 2231 language suffix: "utf-8*ru"
    label = _CHARSET_ALIASES.get(label, label)
    if not label:
        return None
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):
        return None


_CYRILLIC_LOWER = re.compile("[а-яё]")
_CYRILLIC_UPPER = re.compile("[А-ЯЁ]")


def _guess_decode(data: bytes) -> tuple[str, str]:
    """Decode bytes of unknown charset: UTF-8 if valid, else the Cyrillic single-byte charset that
    yields mostly lower-case letters (KOI8-R and CP1251 swap the cases of each other's letters),
    else Windows-1252. Returns (text, codec used)."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    high = sum(1 for b in data if b >= 0xC0)
    latin = sum(1 for b in data if 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A)
    # Cyrillic prose is mostly high bytes (all its letters are); Western European text has a few
    # accented letters among ASCII ones ("café crème": 2 of 9).
    if high and high >= latin * 0.6:
        best: tuple[int, str, str] | None = None
        for codec in ("cp1251", "koi8_r"):
            text = data.decode(codec, errors="replace")
            lower = len(_CYRILLIC_LOWER.findall(text))
            upper = len(_CYRILLIC_UPPER.findall(text))
            # Real prose is mostly lower case; the wrong codec gives mostly capitals.
            if lower + upper >= high * 0.6:
                score = lower - upper
                if best is None or score > best[0]:
                    best = (score, text, codec)
        if best is not None:
            return best[1], best[2]
    return data.decode("cp1252", errors="replace"), "cp1252"


def _decode_bytes(data: bytes, charset: str | None, defects: list[str], where: str) -> str:
    """Decode a body or header chunk by its declared charset, falling back sanely when the label
    is unknown or lies (RFC 2045 §5.2: an unknown charset must still be shown somehow)."""
    codec = _codec(charset)
    if codec is None:
        if charset and charset.strip().lower() not in ("", "unknown-8bit", "8bit"):
            defects.append(f"{where}:unknown-charset:{_clean(charset.strip().lower())[:40]}")
        if data.isascii():
            return data.decode("ascii")
        text, _ = _guess_decode(data)
        return text
    if codec == "ascii" and not data.isascii():
        # 8-bit bytes labelled us-ascii (or unlabelled, RFC 2045 default): guess.
        text, used = _guess_decode(data)
        defects.append(f"{where}:8bit-in-ascii:{used}")
        return text
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        for family in _FAMILIES:
            if any(codec.startswith(member) for member in family):
                for sibling in family:
                    try:
                        text = data.decode(sibling)
                    except (UnicodeDecodeError, LookupError):
                        continue
                    defects.append(f"{where}:charset-mismatch:{codec}->{sibling}")
                    return text
        text, used = _guess_decode(data)
        defects.append(f"{where}:charset-mismatch:{codec}->{used}")
        return text
    except Exception:  # codec errors beyond decoding (e.g. broken stateful codecs)
        text, used = _guess_decode(data)
        defects.append(f"{where}:codec-error:{codec}")
        return text
    if _SINGLE_BYTE_HINT.match(codec.replace("-", "").replace("_", "")) and not data.isascii():
        # UTF-8 text labelled with a single-byte charset is the commonest mislabelling; random
        # single-byte text almost never forms valid multi-byte UTF-8 sequences.
        try:
            utf8 = data.decode("utf-8")
        except UnicodeDecodeError:
            return text
        defects.append(f"{where}:charset-mislabelled:{codec}->utf-8")
        return utf8
    return text


def _header_str(raw: str, defects: list[str], name: str) -> str:
    """A raw header value as text: 8-bit bytes (kept by the parser as surrogate escapes) decoded
    as UTF-8 (RFC 6532) or guessed; folding removed (RFC 5322 §2.2.3)."""
    if _SURROGATES.search(raw):
        data = raw.encode("utf-8", "surrogateescape")
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError:
            raw, used = _guess_decode(data)
            defects.append(f"header:8bit:{name}:{used}")
    raw = re.sub(r"\r?\n(?=[ \t])", "", raw)
    return raw.replace("\r", " ").replace("\n", " ").strip()


# RFC 2047 encoded word. Lenient: real mail puts them inside quoted strings and next to text.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


def _decode_word(encoding: str, payload: str, defects: list[str]) -> bytes:
    if encoding in "bB":
        payload = re.sub(r"[^A-Za-z0-9+/]", "", payload)
        if len(payload) % 4 == 1:  # one stray character can never decode: drop it
            payload = payload[:-1]
        try:
            return base64.b64decode(payload + "=" * (-len(payload) % 4))
        except (binascii.Error, ValueError):
            defects.append("header:bad-base64-word")
            return b""
    try:
        return binascii.a2b_qp(payload.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        defects.append("header:bad-q-word")
        return payload.encode("ascii", "replace")


def _decode_words(value: str, defects: list[str]) -> str:
    """Decode RFC 2047 encoded words. Whitespace between adjacent words is dropped (§6.2) and
    adjacent words of one charset are joined before decoding, since encoders split multi-byte
    characters across words."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset: str | None = None
    pos = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            out.append(_decode_bytes(b"".join(pending), pending_charset, defects, "header"))
        pending, pending_charset = [], None

    had_word = False
    for match in _ENCODED_WORD.finditer(value):
        between = value[pos : match.start()]
        if between and not (between.isspace() and had_word):
            flush()
            out.append(between)
        charset = match.group(1).split("*", 1)[0].lower()
        if pending and charset != pending_charset:
            flush()
        pending_charset = charset
        pending.append(_decode_word(match.group(2), match.group(3), defects))
        had_word = True
        pos = match.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def decode_header_value(raw: str, defects: list[str] | None = None, name: str = "header") -> str:
    """Public helper: a raw header value (possibly with 8-bit bytes and encoded words) as text."""
    sink: list[str] = [] if defects is None else defects
    try:
        return _clean(_decode_words(_header_str(raw, sink, name), sink))
    except Exception as exc:  # never let one header break a message
        sink.append(f"header:undecodable:{name}:{type(exc).__name__}")
        return _clean(str(raw))


# --------------------------------------------------------------------------- subjects

# Reply/forward prefixes of the clients our customers use (English, German AW/WG, Nordic SV/VS,
# Dutch Antw, Polish Odp, Portuguese Res/Enc, Russian Ответ/Отв/Пересл, Chinese 回复/转发),
# optionally counted: "Re[2]:", "Re(2):", "Re^2:"; spaces before the colon as Outlook writes "RE :".
_PREFIX = re.compile(
    r"^\s*(?:re|fwd?|aw|wg|sv|vs|antw|odp|res|enc|ответ|отв|пересл|回复|答复|转发)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:：]\s*",
    re.IGNORECASE,
)
_LIST_TAG = re.compile(r"^\s*\[[^\]]*\]\s*")


def normalize_subject(subject: str) -> str:
    """The subject Gmail-like threading compares: reply/forward prefixes stripped (repeatedly,
    also after leading list tags like "[team]", which are kept), whitespace collapsed, casefolded.
    Ticket tags like "[#1042]" are part of the subject and kept."""
    s = subject or ""
    tags: list[str] = []
    while True:
        m = _PREFIX.match(s)
        if m:
            s = s[m.end() :]
            continue
        t = _LIST_TAG.match(s)
        if t and _PREFIX.match(s[t.end() :]):
            tags.append(t.group(0).strip())
            s = s[t.end() :]
            continue
        break
    if tags:
        # Keep each list tag once, in order: "Re: [x] Re: [x] topic" -> "[x] topic".
        seen: list[str] = []
        for tag in tags:
            if tag.casefold() not in (t.casefold() for t in seen):
                seen.append(tag)
        rest = _LIST_TAG.match(s)
        while rest and rest.group(0).strip().casefold() in (t.casefold() for t in seen):
            s = s[rest.end() :]
            rest = _LIST_TAG.match(s)
        s = " ".join([*seen, s])
    return " ".join(s.split()).casefold()


# --------------------------------------------------------------------------- HTML to text

_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "xml", "noscript"})
_BLOCK_TAGS = frozenset(
    {
        "div", "li", "tr", "table", "ul", "ol", "blockquote", "pre", "h1", "h2", "h3", "h4",
        "h5", "h6", "hr", "section", "article", "header", "footer", "dl", "dt", "dd", "address",
        "center", "form", "fieldset", "figure", "figcaption", "main", "nav", "aside", "body",
    }
)  # fmt: skip
_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"})


class _TextExtractor(HTMLParser):
    """HTML → plain text with the line structure a reader sees (html.parser, no dependencies)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.lists: list[list[int | str]] = []
        self.started = False  # any visible text yet? (no leading blank lines before it)

    def _trailing_newlines(self) -> int:
        """Newlines at the end of the output so far, trailing spaces ignored."""
        if not self.started:
            return 99
        text = "".join(self.out[-8:]).rstrip(" \t")  # a no-break space is content
        return len(text) - len(text.rstrip("\n"))

    def _break(self, lines: int) -> None:
        have = self._trailing_newlines()
        if have < lines:
            self.out.append("\n" * (lines - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
            return
        if self.skip:
            return
        if tag == "br":
            self.out.append("\n")
        elif tag == "p":
            # Outlook/Word write each line as <p class=MsoNormal> with zero margins.
            classes = (dict(attrs).get("class") or "").lower()
            self._break(1 if "msonormal" in classes else 2)
        elif tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _BLOCK_TAGS:
            self._break(1)
        if tag == "pre":
            self.pre += 1
        elif tag in ("ul", "ol"):
            self.lists.append([tag, 0])
        elif tag == "li":
            if self.lists and self.lists[-1][0] == "ol":
                self.lists[-1][1] = int(self.lists[-1][1]) + 1
                self.out.append(f"{self.lists[-1][1]}. ")
            else:
                self.out.append("- ")
        elif tag == "hr":
            self.out.append("---")
            self._break(1)
        elif tag in ("td", "th") and self.out and not self.out[-1].endswith(("\n", " ", "\t")):
            self.out.append("\t")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            return  # <script/> opens nothing
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        if tag == "p" or tag in _PARAGRAPH_TAGS or tag in _BLOCK_TAGS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if not self.pre:
            data = re.sub(r"[ \t\r\n\f]+", " ", data)
            if self._trailing_newlines() > 0:
                data = data.lstrip(" ")
            if not data:
                return
        self.out.append(data)
        self.started = self.started or not data.isspace() or "\xa0" in data

    def text(self) -> str:
        text = "".join(self.out).replace("\xa0", " ")
        lines = [line.rstrip() for line in text.split("\n")]
        text = "\n".join(lines)
        text = re.sub(r"\n{3,}", "\n\n", text)
        return text.strip("\n").strip()


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: scripts and styles dropped, line breaks for <br>, <p>,
    <div>, <li> and other blocks, entities unescaped. Falls back to stripping tags on markup
    html.parser cannot digest."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
        return parser.text()
    except Exception:
        stripped = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", html)
        stripped = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr)\s*>", "\n", stripped)
        stripped = re.sub(r"<[^>]*>", " ", stripped)
        text = html_unescape(stripped).replace("\xa0", " ")
        lines = [" ".join(line.split()) for line in text.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --------------------------------------------------------------------------- text/plain helpers


def _unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed: a line ending in a space continues on the next line (with the
    space removed when DelSp=yes); "-- " is the signature separator, never flowed; leading
    space-stuffing is removed; quote depth ('>' count) must match to join."""
    out: list[str] = []
    buf: str | None = None
    buf_depth = -1
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        if body.startswith(" "):
            body = body[1:]  # space-stuffing (§4.4)
        flowed = body.endswith(" ") and body != "-- "
        if buf is not None and depth == buf_depth:
            buf += body
        else:
            if buf is not None:
                out.append(_quoted(buf_depth, buf))
            buf, buf_depth = body, depth
        if flowed:
            if delsp:
                buf = buf[:-1]
            continue
        out.append(_quoted(buf_depth, buf))
        buf, buf_depth = None, -1
    if buf is not None:
        out.append(_quoted(buf_depth, buf))
    return "\n".join(out)


def _quoted(depth: int, line: str) -> str:
    if not depth:
        return line
    return ">" * depth + (" " + line if line else "")


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- ids, dates, addresses

_BRACKETED = re.compile(r"<([^<>]*)>")


def _ids(value: str | None, *, many: bool) -> tuple[str, ...]:
    """Message-ids without <> (RFC 5322 §3.6.4), in order, without duplicates; ids lacking their
    brackets (seen in real mail) are taken when they look like ``left@right``."""
    if not value:
        return ()
    found = ["".join(m.split()) for m in _BRACKETED.findall(value)]
    found = [f for f in found if f]
    if not found:
        found = [t.strip("<>,;") for t in re.split(r"[\s,]+", value) if "@" in t]
        found = [f for f in found if f and " " not in f]
    result: list[str] = []
    for item in found:
        item = _clean(item)
        if item not in result:
            result.append(item)
        if not many:
            break
    return tuple(result)


# RFC 5322 §3.3 numeric zones and the obsolete names of §4.3, optionally followed by a comment.
_KNOWN_ZONE = re.compile(
    r"(?:^|[\s\d])([+-]\d{4}|UT|UTC|GMT|Z|[ECMP][SD]T)\s*(?:\(.*\))?\s*$", re.I
)


def _parse_date(value: str | None, defects: list[str]) -> tuple[datetime | None, int | None]:
    """RFC 5322 date with the sender's own offset kept. "-0000" (§3.3: time in UTC, zone unknown)
    and unknown zone names give UTC."""
    if not value:
        return None, None
    try:
        parts = parsedate_tz(value)
    except Exception:
        parts = None
    if parts is None:
        defects.append("date:unparseable")
        return None, None
    year, month, day, hour, minute, second = parts[:6]
    offset = parts[9]  # parsedate_tz gives 0 for "-0000" (§3.3: UTC) and for unknown zones
    if not _KNOWN_ZONE.search(value):
        defects.append("date:unknown-zone")
    try:
        tz = timezone(timedelta(seconds=offset or 0))
    except (ValueError, OverflowError):
        defects.append("date:bad-offset")
        tz, offset = UTC, 0
    try:
        dt = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=tz)
    except (ValueError, OverflowError, TypeError):
        defects.append("date:out-of-range")
        return None, None
    return dt, int((offset or 0) // 60)


_ADDR_FALLBACK = re.compile(r"[^\s<>\"',;:()@]+@[^\s<>\"',;:()@]+")


def _safe_getaddresses(values: list[str]) -> list[tuple[str, str]]:
    try:
        return getaddresses(values)
    except Exception:
        return []


def _addresses(raw_values: Iterable[str]) -> list[tuple[str, str]]:
    """(display name as raw text, lower-cased address) pairs; group syntax and junk skipped."""
    values = list(raw_values)
    pairs = _safe_getaddresses(values)
    result: list[tuple[str, str]] = []
    for name, addr in pairs:
        addr = addr.strip().strip("<>").lower()
        if not addr or any(c in addr for c in ' ;:,<>"()'):
            continue
        result.append((name, addr))
    if not result:
        for value in values:
            for addr in _ADDR_FALLBACK.findall(value):
                result.append(("", addr.lower()))
    return result


# --------------------------------------------------------------------------- MIME tree


def _header_values(msg: Message, name: str) -> list[str]:
    wanted = name.lower()
    try:
        return [str(v) for k, v in msg.raw_items() if k.lower().strip() == wanted]
    except Exception:
        return []


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"


def _param(part: Message, name: str, header: str = "content-type") -> str | None:
    """A Content-Type / Content-Disposition parameter, RFC 2231 continuations and charsets
    decoded. The classic parser first; the default policy's header registry when it fails."""
    try:
        value = part.get_param(name, header=header)
    except Exception:
        with contextlib.suppress(Exception):
            raw = _header_values(part, header)
            if raw:
                params = email_policy.default.header_factory(header, raw[0]).params
                return str(params[name]) if name in params else None
        return None
    if isinstance(value, tuple):  # RFC 2231 (charset, language, value)
        try:
            return value[2].encode("latin-1", "surrogateescape").decode(value[0] or "ascii")
        except Exception:
            return str(value[2])
    return None if value is None else str(value)


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").lower()
    except Exception:
        values = _header_values(part, "content-disposition")
        return values[0].split(";", 1)[0].strip().lower() if values else ""


def _filename(part: Message, defects: list[str]) -> str | None:
    name = _param(part, "filename", "content-disposition") or _param(part, "name")
    if name is None:
        try:
            name = part.get_filename()
        except Exception:
            name = None
    if not name:
        return None
    # Outlook and Gmail put RFC 2047 words in quoted parameters (not allowed, universal).
    return decode_header_value(str(name), defects, "filename") or None


def _payload_bytes(part: Message, defects: list[str]) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception as exc:
        defects.append(f"body:undecodable:{type(exc).__name__}")
        data = None
    if isinstance(data, bytes):
        return data
    try:
        payload = part.get_payload()
    except Exception:
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _header_block(data: bytes) -> Message | None:
    try:
        return BytesHeaderParser(policy=email_policy.compat32).parsebytes(data)
    except Exception:
        return None


def _decoded_headers(msg: Message) -> Mapping[str, tuple[str, ...]]:
    sink: list[str] = []  # an enclosed message's flaws are not this message's defects
    result: dict[str, list[str]] = {}
    try:
        items = list(msg.raw_items())
    except Exception:
        items = []
    for name, value in items:
        key = _clean(str(name)).strip().lower()
        result.setdefault(key, []).append(decode_header_value(str(value), sink, key))
    return MappingProxyType({k: tuple(v) for k, v in result.items()})


_TEXT_MESSAGE_ID = re.compile(r"(?im)^[ \t>]*message-id:[ \t]*<([^<>\s]+)>")

# Machine-readable parts of reports (RFC 3464 DSN, RFC 6533, RFC 5965 ARF, RFC 8098 MDN): part of
# the report's structure, not files anyone attached. Their fields may name the original message.
_REPORT_TYPES = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/feedback-report",
        "message/disposition-notification",
        "message/global-disposition-notification",
    }
)
# Parts that hold (at least) the header block of the original message.
_HEADER_BLOCK_TYPES = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "message/global-headers", "message/partial"}
)


@dataclass
class _Walk:
    defects: list[str]
    part_types: set[str] = field(default_factory=set)
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    embedded: list[str] = field(default_factory=list)
    embedded_headers: list[Mapping[str, tuple[str, ...]]] = field(default_factory=list)
    mime_defects: set[str] = field(default_factory=set)

    def add_embedded(self, message_id: str | None) -> None:
        if message_id and message_id not in self.embedded:
            self.embedded.append(message_id)

    def note_defects(self, part: Message) -> None:
        for defect in getattr(part, "defects", ()) or ():
            self.mime_defects.add(f"mime:{type(defect).__name__}")

    def visit(self, part: Message, *, embedded: bool = False, depth: int = 0) -> None:
        if depth > 50:  # a MIME bomb of nested multiparts
            self.defects.append("mime:too-deep")
            return
        try:
            self._visit(part, embedded=embedded, depth=depth)
        except Exception as exc:  # one unreadable part must not cost the rest of the message
            self.defects.append(f"mime:part-failed:{type(exc).__name__}")
        finally:
            if not embedded:  # after decoding: get_payload(decode=True) adds defects too
                self.note_defects(part)

    def _visit(self, part: Message, *, embedded: bool, depth: int) -> None:
        ctype = _content_type(part)
        self.part_types.add(ctype)
        maintype = ctype.split("/", 1)[0]
        try:
            payload = part.get_payload()
        except Exception:
            payload = None

        if maintype == "message" and ctype not in _REPORT_TYPES:
            # message/rfc822, message/global, message/partial, message/rfc822-headers: the parser
            # may or may not have parsed the enclosed message; either way take its Message-ID.
            inner = payload[0] if isinstance(payload, list) and payload else None
            if not isinstance(inner, Message):
                data = _payload_bytes(part, self.defects)
                try:
                    inner = BytesParser(policy=email_policy.compat32).parsebytes(data)
                except Exception:
                    inner = None
            size = 0
            if inner is not None:
                self.embedded_headers.append(_decoded_headers(inner))
                values = _header_values(inner, "message-id")
                ids = _ids(values[0], many=False) if values else ()
                if ids:
                    self.add_embedded(ids[0])
                else:
                    # Header block cut short by a broken fold: the fields ended up in the body.
                    try:
                        body = inner.get_payload()
                    except Exception:
                        body = None
                    if isinstance(body, str):
                        for found in _TEXT_MESSAGE_ID.findall(body):
                            self.add_embedded(_clean(found))
                try:
                    size = len(inner.as_bytes())
                except Exception:
                    size = len(str(inner))
                self.visit(inner, embedded=True, depth=depth + 1)
            if not embedded and ctype in ("message/rfc822", "message/global"):
                self.attachments.append(Attachment(_filename(part, self.defects), ctype, size))
            return

        if ctype in _REPORT_TYPES:
            blocks = payload if isinstance(payload, list) else []
            for block in blocks:
                if isinstance(block, Message):
                    for value in _header_values(block, "message-id"):
                        for found in _ids(value, many=False):
                            self.add_embedded(found)
            return

        if isinstance(payload, list):
            for child in payload:
                if isinstance(child, Message):
                    self.visit(child, embedded=embedded, depth=depth + 1)
            return

        if maintype == "multipart":
            # No (or no matching) boundary: the parser kept the whole body as one string. Show it
            # as text rather than lose it (RFC 2046 §5.1.1 requires the boundary).
            self.defects.append("mime:multipart-without-parts")
            if not embedded:
                self.plain.append(self._text(part, "text/plain"))
            return

        if ctype in _HEADER_BLOCK_TYPES:
            block = _header_block(_payload_bytes(part, self.defects))
            if block is not None:
                self.embedded_headers.append(_decoded_headers(block))
                for value in _header_values(block, "message-id")[:1]:
                    for found in _ids(value, many=False):
                        self.add_embedded(found)
            return

        if embedded:
            return
        disposition = _disposition(part)
        if ctype in ("text/plain", "text/html") and disposition != "attachment":
            (self.plain if ctype == "text/plain" else self.html).append(self._text(part, ctype))
            return
        data = _payload_bytes(part, self.defects)
        self.attachments.append(Attachment(_filename(part, self.defects), ctype, len(data)))
        if ctype == "text/plain":
            # Bounces attach the original headers as a .txt file (e.g. "mailheaders-….txt").
            text = data.decode("utf-8", "replace")
            for found in _TEXT_MESSAGE_ID.findall(text):
                self.add_embedded(_clean(found))

    def _text(self, part: Message, ctype: str) -> str:
        data = _payload_bytes(part, self.defects)
        charset = _param(part, "charset")
        text = _normalize_newlines(_decode_bytes(data, charset, self.defects, "body"))
        if ctype == "text/plain" and (_param(part, "format") or "").lower() == "flowed":
            text = _unflow(text, (_param(part, "delsp") or "").lower() == "yes")
        return _clean(text)


# --------------------------------------------------------------------------- entry point

_ADDRESS_HEADERS = ("from", "to", "cc", "reply-to")


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one RFC 822 message. Never raises: whatever cannot be read is left empty and named
    in ``defects``."""
    defects: list[str] = []
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    try:
        raw = bytes(raw)
    except Exception:
        raw = b""
    if b"\x00" in raw:
        defects.append("nul-bytes")
    try:
        return _parse(raw, defects)
    except Exception as exc:  # last resort: a message with what the headers alone give
        defects.append(f"parse-failed:{type(exc).__name__}")
        return _fallback(raw, defects)


def _parse(raw: bytes, defects: list[str]) -> ParsedMessage:
    # The MIME tree is read with the compat32 policy: the default policy builds a structured
    # header object for every Content-Type lookup (the feed parser makes several per part), which
    # made parsing 4x slower (570 against 2,400 messages a second here) for nothing we use:
    # headers, parameters and charsets are decoded by the robust code above either way.
    try:
        msg = BytesParser(policy=email_policy.compat32).parsebytes(raw)
    except Exception as exc:
        defects.append(f"parse:compat32-failed:{type(exc).__name__}")
        msg = BytesParser(policy=email_policy.default).parsebytes(raw)

    headers: dict[str, list[str]] = {}
    raw_headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        key = _clean(str(name)).strip().lower()
        raw_value = str(value)
        raw_headers.setdefault(key, []).append(raw_value)
        headers.setdefault(key, []).append(decode_header_value(raw_value, defects, key))

    def first(name: str) -> str | None:
        values = headers.get(name)
        return values[0] if values else None

    def unfolded(name: str) -> list[str]:
        return [_header_str(v, defects, name) for v in raw_headers.get(name, [])]

    addresses: dict[str, list[tuple[str, str]]] = {}
    for name in _ADDRESS_HEADERS:
        addresses[name] = _addresses(unfolded(name))

    from_address = from_name = None
    if addresses["from"]:
        raw_name, from_address = addresses["from"][0]
        from_name = decode_header_value(raw_name, defects, "from").strip().strip('"').strip()
        from_name = from_name or None
        from_address = _clean(from_address)
    elif headers.get("from"):
        # "From: MAILER-DAEMON <>" (null address, as some MTAs write it): keep the name.
        defects.append("header:from-without-address")
        names = [n for n, _ in _safe_getaddresses(unfolded("from")) if n.strip()]
        if names:
            from_name = decode_header_value(names[0], defects, "from").strip().strip('"') or None

    def addr_list(name: str) -> tuple[str, ...]:
        seen: list[str] = []
        for _, addr in addresses[name]:
            if addr not in seen:
                seen.append(_clean(addr))
        return tuple(seen)

    date, offset = _parse_date(first("date"), defects)

    walk = _Walk(defects)
    walk.visit(msg)
    html = "\n".join(h for h in walk.html if h) or None
    if any(p.strip() for p in walk.plain):
        text = "\n".join(p for p in walk.plain if p.strip())
    elif html:
        text = html_to_text(html)
    else:
        text = ""
    text = _clean(text.strip())

    # Bounces that quote the original headers as plain text (qmail, exim, many others).
    for part_text in walk.plain:
        for found in _TEXT_MESSAGE_ID.findall(part_text):
            walk.add_embedded(_clean(found))

    message_id = (_ids(first("message-id"), many=False) or (None,))[0]
    embedded = tuple(e for e in walk.embedded if e != message_id)

    all_defects = [*defects, *sorted(walk.mime_defects)]
    unique_defects = tuple(dict.fromkeys(_clean(d) for d in all_defects))
    return ParsedMessage(
        message_id=message_id,
        in_reply_to=_ids(first("in-reply-to"), many=True),
        references=_ids(" ".join(headers.get("references", [])), many=True),
        subject=first("subject") or "",
        from_address=from_address,
        from_name=from_name,
        to=addr_list("to"),
        cc=addr_list("cc"),
        reply_to=addr_list("reply-to"),
        date=date,
        utc_offset_minutes=offset,
        text=text,
        html=_clean(html) if html else None,
        attachments=tuple(walk.attachments),
        headers=MappingProxyType({k: tuple(v) for k, v in headers.items()}),
        part_types=frozenset(walk.part_types),
        embedded_message_ids=embedded,
        defects=unique_defects,
        embedded_headers=tuple(walk.embedded_headers),
    )


def _fallback(raw: bytes, defects: list[str]) -> ParsedMessage:
    head = raw.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    subject = re.search(r"(?im)^subject:[ \t]*(.*)$", head)
    message_id = re.search(r"(?im)^message-id:[ \t]*<([^<>\s]+)>", head)
    sender = re.search(r"(?im)^from:[ \t]*(.*)$", head)
    from_address = None
    if sender:
        found = _ADDR_FALLBACK.findall(sender.group(1))
        from_address = found[0].lower() if found else None
    return ParsedMessage(
        message_id=_clean(message_id.group(1)) if message_id else None,
        in_reply_to=(),
        references=(),
        subject=_clean(subject.group(1).strip()) if subject else "",
        from_address=_clean(from_address) if from_address else None,
        from_name=None,
        to=(),
        cc=(),
        reply_to=(),
        date=None,
        utc_offset_minutes=None,
        text="",
        html=None,
        attachments=(),
        headers=MappingProxyType({}),
        part_types=frozenset(),
        embedded_message_ids=(),
        defects=tuple(_clean(d) for d in defects),
    )
