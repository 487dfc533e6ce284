"""A generator of realistic customer conversations with a shop's support mailbox.

Tests, benchmarks and the demo need many customer threads that look like real mail: Russian and
English, the charsets Russian mail still arrives in (UTF-8, KOI8-R, Windows-1251), quoted-printable
and base64, the structure and headers of the common mail clients, senders in time zones from
-08:00 to +12:00, HTML-only mail, attachments with non-ASCII names. Every conversation is one
customer's ticket: a distinct customer, a distinct subject, consistent Message-ID / In-Reply-To /
References and "Re:" subjects. Deterministic under a seed, and every generated message carries the
values ``gmail_sync.parse.parse_message`` must read back from it.

Addresses use reserved names (RFC 2606 ``example.*``, RFC 6761 ``.test``) so nothing generated
can reach a real person.
"""

from __future__ import annotations

import base64
import html
import random
import re
import textwrap
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email import quoprimime
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.utils import format_datetime, formataddr
from pathlib import Path
from urllib.parse import quote

__all__ = [
    "DEMO_SEED",
    "DEMO_START",
    "Conversation",
    "GeneratedAttachment",
    "GeneratedMessage",
    "arrival_order",
    "generate_conversations",
    "write_demo_corpus",
]

# Picked among seeds so the 30 demo conversations show every client, charset and encoding.
DEMO_SEED = 20251114
DEMO_START = datetime(2025, 11, 17, 5, 30, tzinfo=UTC)  # a Monday morning in Moscow


@dataclass(frozen=True)
class GeneratedAttachment:
    filename: str
    content_type: str
    size: int  # decoded bytes


@dataclass(frozen=True)
class GeneratedMessage:
    """One raw message and what a correct parser reads from it."""

    raw: bytes
    message_id: str  # without <>
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str
    from_address: str
    from_name: str
    to: tuple[str, ...]
    date: datetime  # aware, in the sender's own offset
    text: str  # the text a reader sees: text/plain, or the HTML's text for HTML-only mail
    from_agent: bool  # written by the support mailbox (import it with the SENT label)
    language: str  # "ru" or "en"
    client: str  # the mail client imitated, e.g. "thunderbird", "outlook"
    charset: str
    transfer_encoding: str
    html_only: bool
    attachments: tuple[GeneratedAttachment, ...] = ()


@dataclass(frozen=True)
class Conversation:
    """A customer thread: the messages in the order they were written (customer first)."""

    customer_email: str
    customer_name: str
    subject: str  # the first message's subject, without "Re:"
    language: str
    utc_offset_minutes: int
    messages: tuple[GeneratedMessage, ...]

    @property
    def raw_messages(self) -> list[bytes]:
        return [m.raw for m in self.messages]

    @property
    def customer_messages(self) -> tuple[GeneratedMessage, ...]:
        return tuple(m for m in self.messages if not m.from_agent)

    def __len__(self) -> int:
        return len(self.messages)


def arrival_order(conversations: Iterable[Conversation]) -> list[GeneratedMessage]:
    """All messages of all conversations in the order they arrive (by UTC instant)."""
    indexed = [
        (m.date.astimezone(UTC), ci, mi, m)
        for ci, conv in enumerate(conversations)
        for mi, m in enumerate(conv.messages)
    ]
    indexed.sort(key=lambda t: (t[0], t[1], t[2]))
    return [t[3] for t in indexed]


# --------------------------------------------------------------------------- people and places

_RU_MALE = (
    "Иван", "Алексей", "Дмитрий", "Сергей", "Андрей", "Михаил", "Николай", "Павел", "Артём",
    "Егор", "Кирилл", "Максим", "Олег", "Роман", "Фёдор", "Григорий", "Виктор", "Степан",
)  # fmt: skip
_RU_FEMALE = (
    "Анна", "Мария", "Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Светлана", "Юлия",
    "Екатерина", "Дарья", "Ксения", "Алёна", "Полина", "Вера", "Людмила", "Галина", "Софья",
)  # fmt: skip
_RU_SURNAMES = (
    "Петров", "Смирнов", "Кузнецов", "Попов", "Соколов", "Лебедев", "Козлов", "Новиков",
    "Морозов", "Волков", "Соловьёв", "Васильев", "Зайцев", "Павлов", "Семёнов", "Голубев",
    "Виноградов", "Богданов", "Воробьёв", "Фёдоров", "Медведев", "Ершов", "Никитин", "Орлов",
)  # fmt: skip
_EN_FIRST = (
    "Emily", "James", "Olivia", "Michael", "Sophia", "David", "Emma", "Daniel", "Ava", "Matthew",
    "Chloe", "Ryan", "Grace", "Ethan", "Hannah", "Lucas", "Zoe", "Nathan", "Priya", "Raj",
    "Aiko", "Mateo", "Liam", "Amelia", "Noah", "Isla", "Oliver", "Mia", "Jack", "Renée", "José",
    "Søren", "Zoë",
)  # fmt: skip
_EN_LAST = (
    "Clark", "Johnson", "Williams", "Brown", "Taylor", "Anderson", "Thomas", "Walker", "White",
    "Harris", "Martin", "Thompson", "Garcia", "Robinson", "Lewis", "Lee", "Young", "Allen",
    "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Campbell",
    "Mitchell", "Müller", "García", "Østergaard", "Nakamura", "Patel",
)  # fmt: skip
_RU_DOMAINS = ("pochta.test", "inbox.test", "sibmail.test", "ural-stroy.test", "kamchatka.test")
_EN_DOMAINS = ("example.com", "example.org", "example.net", "mail.test", "northwind.test")

# Senders' UTC offsets in minutes: Moscow, Kaliningrad, Yekaterinburg, Novosibirsk, Vladivostok,
# Kamchatka; New York, Los Angeles, London, Berlin, Mumbai, São Paulo, Sydney, Auckland.
_RU_OFFSETS = (180, 180, 180, 120, 300, 420, 600, 720)
_EN_OFFSETS = (-300, -480, 0, 60, 330, -180, 600, 720, -300, 60)

_LATIN = (
    "a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r",
    "s", "t", "u", "f", "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya",
)  # fmt: skip
_TRANSLIT = dict(zip("абвгдеёжзийклмнопрстуфхцчшщъыьэюя", _LATIN, strict=True))
_ASCII_FOLD = str.maketrans({"é": "e", "ë": "e", "ø": "o", "Ø": "O", "ü": "u", "í": "i"})


def _translit(name: str) -> str:
    return "".join(_TRANSLIT.get(c, c) for c in name.lower()).translate(_ASCII_FOLD)


@dataclass(frozen=True)
class _Person:
    name: str
    first: str
    email: str
    language: str
    offset: int  # minutes


# --------------------------------------------------------------------------- texts

# Russian texts avoid «», —, № and …: KOI8-R cannot encode them, and customers writing in KOI8-R
# don't type them. (The UTF-8 ones could, but one set of texts keeps the charsets comparable.)
_TOPICS_RU = (
    (
        "Заказ {order} не доставлен",
        [
            "Здравствуйте!",
            "Я оформил заказ {order} {day} и оплатил его картой, но посылка до сих пор не пришла."
            " В отслеживании уже неделю статус 'передан в службу доставки'.",
            "Подскажите, пожалуйста, где сейчас мой заказ и когда его ждать?",
        ],
    ),
    (
        "Возврат денег за заказ {order}",
        [
            "Добрый день.",
            "Две недели назад я вернул {product} из заказа {order} через пункт выдачи."
            " Деньги ({amount} руб.) на карту так и не поступили.",
            "Прошу проверить возврат и сообщить, когда ждать деньги.",
        ],
    ),
    (
        "Пришёл не тот размер: заказ {order}",
        [
            "Здравствуйте.",
            "В заказе {order} я заказывал {product} размера M, а пришёл размер XXL."
            " Упаковка не вскрыта, бирки на месте.",
            "Можно ли обменять товар без повторной оплаты доставки?",
        ],
    ),
    (
        "Не могу войти в личный кабинет (заказ {order})",
        [
            "Добрый вечер!",
            "После смены пароля сайт пишет 'неверный логин или пароль', хотя пароль правильный."
            " Письмо для сброса пароля тоже не приходит.",
            "Мне нужно посмотреть статус заказа {order}. Помогите, пожалуйста.",
        ],
    ),
    (
        "Брак товара в заказе {order}",
        [
            "Здравствуйте,",
            "получил {product} по заказу {order}, а у него трещина на корпусе. Фото прикладываю.",
            "Хочу заменить товар или вернуть деньги. Как лучше поступить?",
        ],
    ),
    (
        "Счёт для юрлица по заказу {order}",
        [
            "Добрый день!",
            "Мы оплачиваем заказ {order} с расчётного счёта организации."
            " Пришлите, пожалуйста, счёт на оплату и закрывающие документы.",
            "Реквизиты: ООО 'Ромашка', ИНН 77{inn}.",
        ],
    ),
    (
        "Дважды списали оплату за заказ {order}",
        [
            "Здравствуйте!",
            "За заказ {order} с моей карты списали {amount} руб. два раза, {day}."
            " В личном кабинете заказ один.",
            "Верните, пожалуйста, лишнее списание.",
        ],
    ),
    (
        "Изменить адрес доставки заказа {order}",
        [
            "Добрый день.",
            "Я ошибся в адресе в заказе {order}: правильный дом 17, а не 71, квартира та же.",
            "Успеете ли вы поправить адрес до отправки?",
        ],
    ),
    (
        "Промокод не работает, заказ {order}",
        [
            "Здравствуйте!",
            "При оформлении заказа {order} промокод из рассылки не применился, сайт пишет,"
            " что срок действия истёк, хотя в письме указано, что он действует до конца месяца.",
            "Можно ли пересчитать заказ со скидкой?",
        ],
    ),
)

_TOPICS_EN = (
    (
        "Order {order} hasn't arrived",
        [
            "Hi,",
            "I placed order {order} on {day} and the tracking page has said 'in transit' for"
            " nine days now. Could you check with the courier where the parcel is?",
            "I need it before the weekend if at all possible.",
        ],
    ),
    (
        "Refund for order {order}",
        [
            "Hello,",
            "I returned the {product} from order {order} two weeks ago and the courier confirmed"
            " the pickup, but the refund of ${amount} still hasn't shown up on my card.",
            "Can you tell me when to expect it?",
        ],
    ),
    (
        "Wrong size delivered - order {order}",
        [
            "Hi there,",
            "Order {order} came today, but the {product} is a size L instead of the S I ordered."
            " The tags are still on and the box is unopened.",
            "How do I exchange it? Do I have to pay for shipping again?",
        ],
    ),
    (
        "Can't log in to my account (order {order})",
        [
            "Hello,",
            "Since yesterday the site keeps saying my password is wrong, and the reset email"
            " never arrives, not even in spam.",
            "I need to download the invoice for order {order}. Could you help?",
        ],
    ),
    (
        "Damaged item in order {order}",
        [
            "Hi,",
            "The {product} from order {order} arrived with a cracked case."
            " I've attached a photo of the damage.",
            "I'd like a replacement, or a refund if it's out of stock.",
        ],
    ),
    (
        "Invoice with VAT number for order {order}",
        [
            "Good morning,",
            "Could you please reissue the invoice for order {order} with our company's VAT"
            " number? It's GB{inn}. Our accounts team can't process it otherwise.",
            "Thanks in advance.",
        ],
    ),
    (
        "Charged twice for order {order}",
        [
            "Hello,",
            "My card was charged ${amount} twice for order {order} on {day}."
            " There's only one order in my account.",
            "Please refund the duplicate charge.",
        ],
    ),
    (
        "Change delivery address for order {order}",
        [
            "Hi,",
            "I made a mistake in the address for order {order}: it's flat 4B, not 48."
            " Can you still change it before it ships?",
        ],
    ),
    (
        "Discount code rejected on order {order}",
        [
            "Hello,",
            "The code from your newsletter was rejected at checkout for order {order} with"
            " 'code expired', but the email says it's valid until the end of the month.",
            "Could you apply the discount to my order?",
        ],
    ),
)

_PRODUCTS_RU = (
    "куртку", "кроссовки", "чайник", "наушники", "рюкзак", "пылесос", "кофемолку",
    "настольную лампу", "термокружку", "пуховик",
)  # fmt: skip
_PRODUCTS_EN = (
    "jacket", "running shoes", "kettle", "headphones", "backpack", "vacuum cleaner",
    "coffee grinder", "desk lamp", "travel mug", "rain coat",
)  # fmt: skip

_FOLLOW_UPS_RU = (
    [
        "Добрый день!",
        "Есть ли новости по моему обращению? Заказ {order} так и не решён.",
    ],
    ["Здравствуйте.", "Уточню: номер заказа {order}, оплачивал картой Visa."],
    ["Спасибо за ответ!", "Всё получилось, вопрос можно закрывать."],
    ["Добрый вечер.", "Прикладываю фото, как вы просили."],
)
_FOLLOW_UPS_EN = (
    ["Hi again,", "Any update on this? Order {order} is still not sorted out."],
    ["Hello,", "To add: the order number is {order}, paid with a Visa card."],
    ["Thanks for the quick reply!", "That worked, you can close this."],
    ["Hi,", "Attaching the photo you asked for."],
)
_AGENT_RU = [
    "Здравствуйте, {first}!",
    "Спасибо за обращение. Мы проверили заказ {order} и передали вопрос в отдел логистики,"
    " ответим в течение рабочего дня.",
    "С уважением,",
    "служба поддержки магазина",
]
_AGENT_EN = [
    "Hi {first},",
    "Thanks for getting in touch. We've looked into order {order} and passed it to our"
    " logistics team; we'll get back to you within one business day.",
    "Best regards,",
    "Shop support",
]

_SIGN_OFF_RU = ("С уважением,", "Спасибо,", "Заранее благодарю,")
_SIGN_OFF_EN = ("Thanks,", "Best regards,", "Kind regards,", "Cheers,")


# --------------------------------------------------------------------------- mail clients


@dataclass(frozen=True)
class _Client:
    name: str
    languages: tuple[str, ...]
    charsets: dict[str, tuple[str, ...]]  # language -> charsets this client sends
    encodings: tuple[str, ...]  # content-transfer-encodings it uses for non-ASCII text
    html: str  # "alternative" (plain + HTML), "plain", or "html-only"
    header_q: bool = False  # encodes headers with Q rather than B
    flowed: bool = False  # RFC 3676 format=flowed text


_CLIENTS = (
    _Client("gmail", ("ru", "en"), {"ru": ("utf-8",), "en": ("utf-8",)}, ("base64", "qp"),
            "alternative"),
    _Client("thunderbird", ("ru", "en"), {"ru": ("utf-8", "koi8-r"), "en": ("utf-8",)},
            ("8bit",), "plain", flowed=True),
    _Client("outlook", ("ru", "en"),
            {"ru": ("windows-1251", "koi8-r", "utf-8"), "en": ("windows-1252", "utf-8")},
            ("qp", "base64"), "alternative"),
    _Client("apple", ("ru", "en"), {"ru": ("utf-8",), "en": ("utf-8",)}, ("qp",), "plain",
            header_q=True),
    _Client("iphone", ("ru", "en"), {"ru": ("utf-8",), "en": ("utf-8", "iso-8859-1")}, ("qp",),
            "plain", header_q=True),
    _Client("thebat", ("ru",), {"ru": ("windows-1251", "koi8-r")}, ("8bit", "qp", "base64"),
            "plain"),
    _Client("yandex", ("ru",), {"ru": ("utf-8",)}, ("base64",), "html-only"),
    _Client("zoho", ("en",), {"en": ("utf-8",)}, ("qp",), "html-only", header_q=True),
)  # fmt: skip


def _client_headers(client: str, rng: random.Random, language: str) -> list[tuple[str, str]]:
    """The headers that identify each client, as they write them."""
    if client in ("gmail", "agent"):
        return []  # Gmail's web client (agents answer from Gmail too) sends no X-Mailer
    if client == "thunderbird":
        version = rng.choice(("115.6.0", "115.10.1", "128.3.0"))
        rv = version.split(".")[0]
        ua = f"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{rv}.0) Gecko/20100101"
        return [
            ("User-Agent", f"{ua} Thunderbird/{version}"),
            ("Content-Language", "ru" if language == "ru" else "en-US"),
        ]
    if client == "outlook":
        index = base64.b64encode(rng.randbytes(22)).decode()
        return [
            ("X-Mailer", "Microsoft Outlook 16.0"),
            ("Thread-Index", index),
            ("Content-Language", "ru" if language == "ru" else "en-us"),
        ]
    if client == "apple":
        return [("X-Mailer", "Apple Mail (2.3774.500.171.1.1)")]
    if client == "iphone":
        return [("X-Mailer", "iPhone Mail (21F90)")]
    if client == "thebat":
        return [("X-Mailer", "The Bat! (v10.4.0.3) Professional")]
    if client == "yandex":
        return [("X-Mailer", "Yamail [ http://yandex.ru ] 5.0")]
    if client == "zoho":
        return [("User-Agent", "Zoho Mail"), ("X-Mailer", "Zoho Mail")]
    raise ValueError(client)


def _message_id(client: str, rng: random.Random, domain: str, when: datetime) -> str:
    if client == "gmail" or client == "agent":
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-="
        body = "".join(rng.choice(alphabet) for _ in range(rng.randint(44, 52)))
        return f"CA{body}@mail.gmail.com"
    if client == "outlook":
        return (
            f"{rng.getrandbits(36):09x}{rng.getrandbits(16):04x}$"
            f"{rng.getrandbits(32):08x}${rng.getrandbits(32):08x}@{domain}"
        )
    if client in ("apple", "iphone"):
        return f"{uuid.UUID(int=rng.getrandbits(128), version=4)}".upper() + f"@{domain}"
    if client == "thebat":
        return f"{rng.getrandbits(30)}.{when.strftime('%Y%m%d%H%M%S')}@{domain}"
    if client == "yandex":
        return f"{rng.getrandbits(40)}{rng.randint(1000, 9999)}@mail.yandex.ru"
    return f"{uuid.UUID(int=rng.getrandbits(128), version=4)}@{domain}"


# --------------------------------------------------------------------------- MIME building

_CRLF = "\r\n"


def _fits(text: str, charset: str) -> bool:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        return False
    return True


def _header_charset(charset: str, q: bool) -> Charset:
    cs = Charset(charset)
    cs.header_encoding = QP if q else BASE64
    return cs


def _encode_header(name: str, value: str, charset: str, q: bool) -> str:
    """A header line as the client writes it: RFC 2047 words in the body charset when needed."""
    if value.isascii():
        encoded = value
    else:
        header = Header(value, _header_charset(charset, q), header_name=name)
        encoded = header.encode(linesep=_CRLF)
    return f"{name}: {encoded}"


def _encode_address(name: str, address: str, charset: str, q: bool) -> str:
    if name.isascii():
        return formataddr((name, address))
    return formataddr((name, address), charset=_header_charset(charset, q))


def _encode_body(text: str, charset: str, cte: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, encoded body) of a text with LF line ends. ASCII text goes
    as 7bit whatever the client's preference, as clients do."""
    data = text.replace("\n", _CRLF).encode(charset)
    if data.isascii() and max(map(len, data.split(b"\r\n"))) <= 76:
        return "7bit", data + b"\r\n"
    if cte == "8bit":
        return "8bit", data + b"\r\n"
    if cte == "qp":
        encoded = quoprimime.body_encode(data.decode("latin-1"), maxlinelen=76, eol=_CRLF)
        return "quoted-printable", encoded.encode("ascii") + b"\r\n"
    lines = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return "base64", lines


def _text_part(
    text: str, subtype: str, charset: str, cte: str, *, flowed: bool = False
) -> tuple[str, bytes, str]:
    """A leaf text part: (header block, body bytes, transfer encoding used)."""
    used_cte, body = _encode_body(text, charset, cte)
    params = f"charset={charset}" if not flowed else f"charset={charset}; format=flowed"
    if charset == "utf-8" and subtype == "plain" and not flowed:
        params = 'charset="UTF-8"'
    head = f"Content-Type: text/{subtype}; {params}{_CRLF}Content-Transfer-Encoding: {used_cte}"
    return head, body, used_cte


def _flow(text: str) -> str:
    """RFC 3676 format=flowed encoding: long lines soft-broken (trailing space) at 72 columns,
    lines starting with a space or "From " space-stuffed; quoted lines keep their ">" marks."""
    out: list[str] = []
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        prefix = ">" * depth
        body = line[depth:]
        if depth and body.startswith(" "):
            body = body[1:]
        stuffed = bool(body.startswith((" ", "From ", ">")) and not depth)
        if len(body) <= 72 or body == "-- ":
            out.append(prefix + (" " if (depth and body) or stuffed else "") + body)
            continue
        chunks: list[str] = []
        current = ""
        for word in body.split(" "):
            candidate = f"{current}{word} "
            if current and len(candidate) > 72:
                chunks.append(current)
                current = f"{word} "
            else:
                current = candidate
        chunks.append(current[:-1])
        for chunk in chunks:
            lead = " " if depth or chunk.startswith((" ", "From ", ">")) else ""
            out.append(prefix + lead + chunk)
    return "\n".join(out)


def _multipart(boundary: str, parts: Sequence[tuple[str, bytes]]) -> bytes:
    """RFC 2046 §5.1.1 body: each part after a delimiter line, then the close delimiter."""
    out = bytearray()
    for head, body in parts:
        out += f"--{boundary}{_CRLF}{head}{_CRLF}{_CRLF}".encode("ascii")
        out += body if body.endswith(b"\r\n") else body + b"\r\n"
    out += f"--{boundary}--{_CRLF}".encode("ascii")
    return bytes(out)


def _boundary(client: str, rng: random.Random) -> str:
    if client in ("gmail", "agent"):
        return f"000000000000{rng.getrandbits(48):012x}"
    if client == "outlook":
        return f"_000_{rng.getrandbits(64):016X}{rng.getrandbits(32):08X}_"
    if client in ("apple", "iphone"):
        return f"Apple-Mail={str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()}"
    return f"------------{rng.getrandbits(96):024x}"


def _html_of(lines: Sequence[str], client: str, charset: str) -> str:
    """HTML whose text (as ``parse.html_to_text`` reads it) is exactly ``lines``."""
    esc = [html.escape(line, quote=False) for line in lines]
    if client == "outlook":
        body = "".join(
            f"<p class=MsoNormal>{e}<o:p></o:p></p>\n"
            if e
            else "<p class=MsoNormal><o:p>&nbsp;</o:p></p>\n"
            for e in esc
        )
        return (
            '<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>'
            f'<meta http-equiv=Content-Type content="text/html; charset={charset}">'
            "<style><!-- p.MsoNormal {margin:0cm; font-family:Calibri;} --></style></head>"
            f"<body lang=RU><div class=WordSection1>\n{body}</div></body></html>"
        )
    if client == "zoho":
        paragraphs: list[list[str]] = [[]]
        for e in esc:
            if e:
                paragraphs[-1].append(e)
            elif paragraphs[-1]:
                paragraphs.append([])
        inner = "".join(f"<p>{'<br>'.join(p)}</p>\n" for p in paragraphs if p)
        return (
            f'<!DOCTYPE html><html><head><meta content="text/html;charset={charset}" '
            'http-equiv="Content-Type"></head><body><div style="font-family: Verdana, '
            f'Arial; font-size: 10pt;">\n{inner}</div></body></html>'
        )
    divs = "".join(f"<div>{e}</div>" if e else "<div>&nbsp;</div>" for e in esc)
    if client == "yandex":
        return f"<div>{divs}</div>\n"
    return f'<div dir="ltr">{divs}</div>\n'  # Gmail


def _attachment_part(att: tuple[str, str, bytes], client: str, charset: str) -> tuple[str, bytes]:
    """An attachment as each client names it: RFC 2231 (Thunderbird, Apple, The Bat) or RFC 2047
    words inside quoted parameters (Outlook, Gmail, web mail)."""
    filename, content_type, data = att
    if filename.isascii():
        name_param = f'name="{filename}"'
        disp_param = f'filename="{filename}"'
    elif client in ("thunderbird", "apple", "iphone", "thebat"):
        cs = charset if _fits(filename, charset) else "utf-8"
        encoded = quote(filename.encode(cs), safe="")
        name_param = f"name*={cs}''{encoded}"
        if len(encoded) > 60:  # RFC 2231 §3 continuations, as Thunderbird splits long names
            pieces: list[str] = [""]
            for token in re.findall(r"%[0-9A-F]{2}|[^%]", encoded):  # never split an escape
                if len(pieces[-1]) + len(token) > 60:
                    pieces.append("")
                pieces[-1] += token
            disp_param = (";" + _CRLF + " ").join(
                f"filename*{i}*={cs}''{p}" if i == 0 else f"filename*{i}*={p}"
                for i, p in enumerate(pieces)
            )
        else:
            disp_param = f"filename*={cs}''{encoded}"
    else:
        word = Header(filename, _header_charset("utf-8", False)).encode()
        name_param = f'name="{word}"'
        disp_param = f'filename="{word}"'
    disposition = "inline" if client in ("apple", "iphone") else "attachment"
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    head = (
        f"Content-Type: {content_type};{_CRLF} {name_param}{_CRLF}"
        f"Content-Disposition: {disposition};{_CRLF} {disp_param}{_CRLF}"
        "Content-Transfer-Encoding: base64"
    )
    return head, body


# --------------------------------------------------------------------------- texts per message

_MONTHS_RU = (
    "января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября",
    "октября", "ноября", "декабря",
)  # fmt: skip


# Names spelled out rather than strftime("%a %b"), which follows the process locale.
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
_DAYS_EN = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _attribution(client: str, language: str, when: datetime, name: str, address: str) -> str:
    """The line a client writes above a quoted message."""
    hm = when.strftime("%H:%M")
    if language == "ru":
        if client == "thebat":
            return f"Вы писали {when.day} {_MONTHS_RU[when.month - 1]} {when.year} г., {hm}:"
        if client == "thunderbird":
            return f"{when.strftime('%d.%m.%Y')} {hm}, {name} пишет:"
        day = f"{when.day} {_MONTHS_RU[when.month - 1]} {when.year} г."
        return f"{day}, в {hm}, {name} <{address}>:"
    if client == "thunderbird":
        return f"On {when.strftime('%m/%d/%y')} {hm}, {name} wrote:"
    day = f"{_DAYS_EN[when.weekday()]}, {when.day:02d} {_MONTHS_EN[when.month - 1][:3]} {when.year}"
    return f"On {day} at {hm}, {name} <{address}> wrote:"


def _quote(lines: Sequence[str]) -> list[str]:
    return [f"> {line}" if line else ">" for line in lines]


def _wrap(paragraph: str, width: int = 72) -> list[str]:
    return textwrap.wrap(paragraph, width=width, break_long_words=False, break_on_hyphens=False)


def _fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


# --------------------------------------------------------------------------- the generator


@dataclass
class _State:
    rng: random.Random
    mailbox: str
    used_emails: set[str] = field(default_factory=set)
    used_subjects: set[str] = field(default_factory=set)
    used_orders: set[int] = field(default_factory=set)
    used_ids: set[str] = field(default_factory=set)


def _new_person(state: _State, language: str) -> _Person:
    rng = state.rng
    if language == "ru":
        female = rng.random() < 0.5
        first = rng.choice(_RU_FEMALE if female else _RU_MALE)
        last = rng.choice(_RU_SURNAMES) + ("а" if female else "")
        latin_name = rng.random() < 0.15  # some write their name in Latin letters
        name = f"{first} {last}"
        if latin_name:
            name = f"{_translit(first).title()} {_translit(last).title()}"
        domains, offsets = _RU_DOMAINS, _RU_OFFSETS
        local = rng.choice(
            (
                f"{_translit(first)}.{_translit(last)}",
                f"{_translit(first)[0]}.{_translit(last)}",
                f"{_translit(last)}{rng.randint(70, 99)}",
            )
        )
    else:
        first, last = rng.choice(_EN_FIRST), rng.choice(_EN_LAST)
        name = f"{first} {last}"
        domains, offsets = _EN_DOMAINS, _EN_OFFSETS
        f, la = first.translate(_ASCII_FOLD).lower(), last.translate(_ASCII_FOLD).lower()
        local = rng.choice((f"{f}.{la}", f"{f[0]}{la}", f"{f}{rng.randint(1, 99)}"))
    domain = rng.choice(domains)
    email = f"{local}@{domain}"
    n = 2
    while email in state.used_emails or email == state.mailbox:
        email = f"{local}{n}@{domain}"
        n += 1
    state.used_emails.add(email)
    return _Person(name=name, first=name.split()[0], email=email, language=language,
                   offset=rng.choice(offsets))  # fmt: skip


def _slots(state: _State, language: str, when: datetime) -> dict[str, str]:
    rng = state.rng
    order = rng.randint(10000, 999999)
    while order in state.used_orders:
        order = rng.randint(10000, 999999)
    state.used_orders.add(order)
    day = when - timedelta(days=rng.randint(3, 20))
    if language == "ru":
        day_text = f"{day.day} {_MONTHS_RU[day.month - 1]}"
        product = rng.choice(_PRODUCTS_RU)
    else:
        day_text = f"{_MONTHS_EN[day.month - 1]} {day.day}"
        product = rng.choice(_PRODUCTS_EN)
    return {
        "order": str(order),
        "day": day_text,
        "product": product,
        "amount": f"{rng.randint(9, 499) * 10 + 9}",
        "inn": f"{rng.randint(10**7, 10**8 - 1)}",
    }


def _attachments_for(
    rng: random.Random, language: str, order: str, photo: bool
) -> list[tuple[str, str, bytes]]:
    """Small files with the right magic bytes, so a content sniffer agrees with the type."""
    files: list[tuple[str, str, bytes]] = []
    if photo:
        name = rng.choice(
            ("IMG_{n}.jpg", "фото брака.jpg", "photo {n}.jpeg")
            if language == "ru"
            else ("IMG_{n}.jpg", "damage photo.jpg", "Screenshot {n}.png")
        ).format(n=rng.randint(1000, 9999))
        kind = "image/png" if name.endswith(".png") else "image/jpeg"
        magic = b"\x89PNG\r\n\x1a\n" if kind == "image/png" else b"\xff\xd8\xff\xe0\x00\x10JFIF"
        files.append((name, kind, magic + rng.randbytes(rng.randint(1500, 6000))))
    if rng.random() < 0.5:
        name = (
            rng.choice(("Чек по заказу {o}.pdf", "квитанция_{o}.pdf", "Накладная {o}.pdf"))
            if language == "ru"
            else rng.choice(("receipt-{o}.pdf", "Invoice {o}.pdf"))
        ).format(o=order)
        data = b"%PDF-1.4\n" + rng.randbytes(rng.randint(800, 4000))
        files.append((name, "application/pdf", data))
    return files


def _build_message(
    *,
    state: _State,
    client: _Client,
    charset: str,
    cte: str,
    sender: tuple[str, str],
    to: tuple[str, str],
    subject: str,
    when: datetime,
    lines: list[str],
    in_reply_to: str | None,
    references: tuple[str, ...],
    attachments: list[tuple[str, str, bytes]],
    language: str,
    from_agent: bool,
    extra_headers: list[tuple[str, str]],
) -> GeneratedMessage:
    rng = state.rng
    domain = sender[1].split("@", 1)[1]
    client_key = "agent" if from_agent else client.name
    mid = _message_id(client_key, rng, domain, when)
    while mid in state.used_ids:
        mid = _message_id(client_key, rng, domain, when)
    state.used_ids.add(mid)

    text = "\n".join(lines)
    q = client.header_q
    headers = [
        _encode_address_header("From", sender, charset, q),
        _encode_address_header("To", to, charset, q),
        _encode_header("Subject", subject, charset, q),
        f"Date: {format_datetime(when)}",
        f"Message-ID: <{mid}>",
    ]
    if in_reply_to:
        headers.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        refs = (_CRLF + " ").join(f"<{r}>" for r in references)
        headers.append(f"References: {refs}")
    headers += [f"{k}: {v}" for k, v in _client_headers(client.name, rng, language)]
    headers += [f"{k}: {v}" for k, v in extra_headers]
    mime_version = "1.0"
    if client.name == "apple":
        mime_version = "1.0 (Mac OS X Mail 16.0 \\(3774.500.171.1.1\\))"
    headers.append(f"MIME-Version: {mime_version}")

    # The body: plain, plain + HTML, or HTML only; attachments around it.
    body_part: tuple[str, bytes]
    if client.html == "html-only":
        head, body, used_cte = _text_part(
            _html_of(lines, client.name, charset), "html", charset, cte
        )
        body_part = (head, body)
        expected_text = _expected_from_html(lines)
    elif client.html == "alternative":
        head, body, used_cte = _text_part(text, "plain", charset, cte)
        rich_head, rich_body, _ = _text_part(
            _html_of(lines, client.name, charset), "html", charset, cte
        )
        boundary = _boundary(client.name, rng)
        body_part = (
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
            _multipart(boundary, [(head, body), (rich_head, rich_body)]),
        )
        expected_text = text
    else:
        flowed_text = _flow(text) if client.flowed else text
        head, body, used_cte = _text_part(flowed_text, "plain", charset, cte, flowed=client.flowed)
        body_part = (head, body)
        expected_text = text
    if attachments:
        boundary = _boundary(client.name, rng)
        parts = [body_part] + [_attachment_part(a, client.name, charset) for a in attachments]
        top_head, top_body = (
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
            _multipart(boundary, parts),
        )
    else:
        top_head, top_body = body_part
    raw = (_CRLF.join([*headers, top_head]) + _CRLF + _CRLF).encode("ascii") + top_body
    return GeneratedMessage(
        raw=raw,
        message_id=mid,
        in_reply_to=in_reply_to,
        references=references,
        subject=subject,
        from_address=sender[1],
        from_name=sender[0],
        to=(to[1],),
        date=when,
        text=expected_text.strip(),
        from_agent=from_agent,
        language=language,
        client=client.name if not from_agent else "agent",
        charset=charset,
        transfer_encoding=used_cte,
        html_only=client.html == "html-only",
        attachments=tuple(GeneratedAttachment(n, t, len(d)) for n, t, d in attachments),
    )


def _encode_address_header(name: str, who: tuple[str, str], charset: str, q: bool) -> str:
    return f"{name}: {_encode_address(who[0], who[1], charset, q)}"


def _expected_from_html(lines: Sequence[str]) -> str:
    """What HTML-to-text yields for ``_html_of(lines)``: the lines, runs of blank lines as one."""
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_AGENT_CLIENT = _Client("agent", ("ru", "en"), {"ru": ("utf-8",), "en": ("utf-8",)},
                        ("qp",), "alternative")  # fmt: skip


def _compose_first(
    state: _State, person: _Person, slots: dict[str, str], topic: tuple[str, list[str]]
) -> tuple[str, list[str]]:
    rng = state.rng
    subject_t, paragraphs_t = topic
    subject = _fill(subject_t, slots)
    paragraphs = [_fill(p, slots) for p in paragraphs_t]
    sign_off = rng.choice(_SIGN_OFF_RU if person.language == "ru" else _SIGN_OFF_EN)
    return subject, [*paragraphs, f"{sign_off}\n{person.name}"]


def _render(paragraphs: Sequence[str], client: _Client) -> list[str]:
    """Paragraphs as the client lays them out: blank lines between, hard-wrapped at 72 columns
    unless the client sends flowed text or HTML (which keep a paragraph on one line)."""
    lines: list[str] = []
    for i, paragraph in enumerate(paragraphs):
        if i:
            lines.append("")
        for line in paragraph.split("\n"):
            if client.flowed or client.html != "plain" or len(line) <= 76:
                lines.append(line)
            else:
                lines.extend(_wrap(line))
    return lines


def generate_conversations(
    n: int,
    *,
    seed: int,
    mailbox: str = "support@shop.test",
    start: datetime,
    agent_replies: bool = False,
) -> list[Conversation]:
    """``n`` customer conversations starting at ``start``, each 1-4 messages.

    With ``agent_replies`` some threads also hold replies written from ``mailbox`` (marked
    ``from_agent``; import them with the SENT label); without, every message is the customer's.
    Same arguments, same bytes.
    """
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    # Test data, not secrets: a seeded PRNG is the point (same seed, same bytes).
    state = _State(rng=random.Random(seed), mailbox=mailbox.lower())  # noqa: S311
    rng = state.rng
    conversations: list[Conversation] = []
    clock = start
    for _ in range(n):
        clock += timedelta(minutes=rng.randint(3, 90), seconds=rng.randint(0, 59))
        language = "ru" if rng.random() < 0.5 else "en"
        conversations.append(_conversation(state, language, clock, agent_replies))
    return conversations


def _conversation(state: _State, language: str, first_at: datetime, agent: bool) -> Conversation:
    rng = state.rng
    person = _new_person(state, language)
    clients = [c for c in _CLIENTS if language in c.languages]
    client = rng.choice(clients)
    charset = rng.choice(client.charsets[language])
    cte = rng.choice(client.encodings)
    tz = timezone(timedelta(minutes=person.offset))
    slots = _slots(state, language, first_at)
    topics = _TOPICS_RU if language == "ru" else _TOPICS_EN
    subject, paragraphs = "", []
    for _attempt in range(20):
        subject, paragraphs = _compose_first(state, person, slots, rng.choice(topics))
        if subject.casefold() not in state.used_subjects:
            break
        slots = _slots(state, language, first_at)
    state.used_subjects.add(subject.casefold())

    extra: list[tuple[str, str]] = []
    roll = rng.random()
    if roll < 0.15:
        extra.append(("X-Priority", "1 (Highest)" if client.name != "outlook" else "1"))
        extra.append(("Importance", "High" if client.name == "outlook" else "high"))
    elif roll < 0.25:
        extra.append(("Auto-Submitted", "no"))  # RFC 3834: explicitly written by a person

    mailbox_name = "Служба поддержки" if language == "ru" else "Shop Support"
    count = rng.choices((1, 2, 3, 4), weights=(45, 30, 15, 10))[0]
    messages: list[GeneratedMessage] = []
    when = first_at.astimezone(tz)
    photo = "фото" in " ".join(paragraphs).lower() or "photo" in " ".join(paragraphs).lower()
    for index in range(count):
        reply_from_agent = agent and index > 0 and rng.random() < 0.5
        previous = messages[-1] if messages else None
        if previous is not None:
            gap = timedelta(minutes=rng.randint(15, 30 * 60), seconds=rng.randint(0, 59))
            when = (previous.date + gap).astimezone(
                tz if not reply_from_agent else timezone(timedelta(hours=3))
            )
        if index == 0:
            lines = _render(paragraphs, client)
            attachments = (
                _attachments_for(rng, language, slots["order"], photo)
                if (photo or rng.random() < 0.1)
                else []
            )
            msg_subject = subject
        elif previous is not None:
            msg_subject = _reply_subject(subject, client if not reply_from_agent else None)
            if reply_from_agent:
                body_t = _AGENT_RU if language == "ru" else _AGENT_EN
                own = [_fill(p, {**slots, "first": person.first}) for p in body_t]
                own_paragraphs = [own[0], own[1], f"{own[2]}\n{own[3]}"]
            else:
                follow = rng.choice(_FOLLOW_UPS_RU if language == "ru" else _FOLLOW_UPS_EN)
                own_paragraphs = [_fill(p, slots) for p in follow] + [person.first]
            quoting_client = _AGENT_CLIENT if reply_from_agent else client
            lines = _render(own_paragraphs, quoting_client)
            if quoting_client.html != "html-only":
                lines += [
                    "",
                    _attribution(
                        "gmail" if reply_from_agent else client.name,
                        language,
                        previous.date,
                        previous.from_name,
                        previous.from_address,
                    ),
                    "",
                    *_quote(previous.text.split("\n")),
                ]
            wants_photo = not reply_from_agent and any(
                w in " ".join(own_paragraphs).lower() for w in ("фото", "photo")
            )
            attachments = (
                _attachments_for(rng, language, slots["order"], True) if (wants_photo) else []
            )
        if reply_from_agent:
            sender = (mailbox_name, state.mailbox)
            to = (person.name, person.email)
            msg = _build_message(
                state=state, client=_AGENT_CLIENT, charset="utf-8", cte="qp", sender=sender,
                to=to, subject=msg_subject, when=when, lines=lines,
                in_reply_to=previous.message_id if previous else None,
                references=_refs(messages), attachments=[], language=language,
                from_agent=True, extra_headers=[],
            )  # fmt: skip
        else:
            use_charset = charset
            if not _fits("\n".join(lines) + subject + person.name, use_charset):
                use_charset = "utf-8"
            msg = _build_message(
                state=state, client=client, charset=use_charset, cte=cte,
                sender=(person.name, person.email),
                to=(mailbox_name, state.mailbox), subject=msg_subject, when=when, lines=lines,
                in_reply_to=previous.message_id if previous else None,
                references=_refs(messages), attachments=attachments, language=language,
                from_agent=False, extra_headers=extra,
            )  # fmt: skip
        messages.append(msg)
    return Conversation(
        customer_email=person.email,
        customer_name=person.name,
        subject=subject,
        language=language,
        utc_offset_minutes=person.offset,
        messages=tuple(messages),
    )


def _refs(messages: Sequence[GeneratedMessage]) -> tuple[str, ...]:
    """RFC 5322 §3.6.4: the parent's References plus the parent's Message-ID."""
    if not messages:
        return ()
    parent = messages[-1]
    return (*parent.references, parent.message_id)


def _reply_subject(subject: str, client: _Client | None) -> str:
    # Outlook writes "RE:"; the others (and our agents' Gmail) "Re:".
    prefix = "RE: " if client is not None and client.name == "outlook" else "Re: "
    return prefix + subject


# --------------------------------------------------------------------------- demo corpus

_DEMO_NAME = re.compile(r"^\d{3}-.*\.eml$")


def write_demo_corpus(
    path: Path | str,
    *,
    n: int = 30,
    seed: int = DEMO_SEED,
    start: datetime = DEMO_START,
    mailbox: str = "support@demo.inboxdesk.test",  # app.demo.DEMO_MAILBOX
) -> list[Path]:
    """Write the demo's customer mail as ``NNN-<customer>.eml`` in arrival order (sorted file
    names are the order to import them in). Earlier ``NNN-*.eml`` files there are replaced."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if _DEMO_NAME.match(old.name):
            old.unlink()
    written: list[Path] = []
    messages = arrival_order(generate_conversations(n, seed=seed, mailbox=mailbox, start=start))
    for index, message in enumerate(messages, start=1):
        slug = re.sub(r"[^a-z0-9.]+", "-", message.from_address.split("@", 1)[0]).strip("-.")
        target = folder / f"{index:03d}-{slug}.eml"
        target.write_bytes(message.raw)
        written.append(target)
    return written
