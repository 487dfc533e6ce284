"""The sidebar's cards as plain JSON dicts (``google.apps.card.v1.Card``), and the render actions
that carry them back to Gmail. Pure functions of the values in views.py: no database here.

References (Google Workspace add-ons, HTTP runtime):

* Card JSON: https://developers.google.com/workspace/add-ons/reference/rpc/google.apps.card.v1
  (Card, CardHeader, Section, Widget: decoratedText, textParagraph, buttonList,
  selectionInput DROPDOWN, textInput, divider; OnClick ``action`` / ``openLink``; fixedFooter).
  "You can add up to 100 widgets per card. If a section's widgets push the total count above
  100, that entire section and all following sections are ignored" (the Card message,
  https://developers.google.com/workspace/chat/api/reference/rest/v1/cards#Card, which states it
  for add-ons too) — so every card is cut to ``MAX_WIDGETS`` here, lists with a "more…" button
  that pages on.
* An action's ``function`` is the URL Google POSTs the event to, its ``parameters`` come back as
  ``commonEventObject.parameters`` and every input's value as ``formInputs``
  (https://developers.google.com/workspace/add-ons/guides/alternate-runtimes,
  https://developers.google.com/workspace/add-ons/concepts/event-objects).
* Answers (https://developers.google.com/workspace/add-ons/reference/callback-contract, and
  Google's HTTP sample googleworkspace/add-ons-samples node/3p-resources/index.js): a trigger
  (homepage, contextual, compose) answers ``{"action": {"navigations": [{"pushCard": card}]}}``;
  a card's action answers ``{"renderActions": {"action": {"navigations": [{"updateCard": card}],
  "notification": {"text": …}}}}``; an insertion into the open draft answers
  ``{"renderActions": {"hostAppAction": {"gmailAction": {"updateDraftActionMarkup":
  {"updateBody": {"insertContents": [{"content": …, "contentType": "TEXT" | "MUTABLE_HTML"}],
  "type": "IN_PLACE_INSERT"}}}}}}`` (Gmail, "Extending the compose UI with compose actions",
  https://developers.google.com/workspace/add-ons/gmail/extending-compose-ui; Apps Script's
  UpdateDraftBodyAction / UpdateDraftBodyType.IN_PLACE_INSERT are the same message).
* Formatted text: ``decoratedText.text`` and ``textParagraph.text`` take simple HTML — ``<b>
  <i> <u> <s> <font color> <a href> <time> <br>`` ("Format text in a DecoratedText widget",
  https://developers.google.com/chat/ui/widgets/decorated-text; the same table for
  https://developers.google.com/chat/ui/widgets/text-paragraph). Labels, headers, button texts,
  selection items and input values are plain text. So every value we did not write ourselves is
  escaped before it enters a formatted field (``esc``), and mail, which may itself be HTML, is
  reduced to that subset with nh3 (``mail_html``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import nh3

from app.addon.presence import Colleague
from app.addon.views import (
    ComposeView,
    Due,
    HomeView,
    NotesView,
    Queue,
    TemplateItem,
    ThreadView,
    TicketRow,
    TicketView,
    gmail_thread_url,
)
from app.tickets.models import Priority, Status

Card = dict[str, Any]
Widget = dict[str, Any]

MAX_WIDGETS = 100
HOME_TEAMS = 6

STATUS_LABEL = {
    Status.NEW: "New",
    Status.OPEN: "Open",
    Status.PENDING: "Pending",
    Status.RESOLVED: "Resolved",
    Status.CLOSED: "Closed",
}
PRIORITY_LABEL = {
    Priority.LOW: "Low",
    Priority.NORMAL: "Normal",
    Priority.HIGH: "High",
    Priority.URGENT: "Urgent",
}
SLA_COLOR = {"breached": "#d93025", "at_risk": "#e37400"}
NOBODY = "none"  # the assignee dropdown's "Unassigned" (an item's value cannot be empty)

# -- text -------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
CARD_TAGS = {"b", "i", "u", "s", "font", "a", "br"}
_COLOR = re.compile(r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]{3,20})$")
_BLOCK_END = re.compile(r"(?i)</(p|div|li|tr|h[1-6]|blockquote)\s*>|<(br|hr)\s*/?>")


_ANGLES = str.maketrans({"<": "‹", ">": "›"})


def plain(text: str | None, limit: int = 200) -> str:
    """A value for a plain-text field (label, header, button, item): one line, no control
    characters, at most ``limit``. Angle brackets become ‹ › so that no tag can form even where
    a client renders such a field as HTML (a customer chooses their own display name)."""
    value = " ".join(_CONTROL.sub(" ", text or "").split()).translate(_ANGLES)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def esc(text: str | None, limit: int = 2000) -> str:
    """Our own text for a formatted field: escaped, line breaks as ``<br>``."""
    value = _CONTROL.sub(" ", text or "").strip()
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return html.escape(value, quote=False).replace("\r\n", "\n").replace("\n", "<br>")


def _color_only(tag: str, attribute: str, value: str) -> str | None:
    if tag == "font" and attribute == "color":
        return value if _COLOR.match(value.strip()) else None
    return value


def mail_html(text: str | None, limit: int = 2000) -> str:
    """Mail text (plain, or HTML from a message) reduced to the card HTML subset: other tags go
    (script and style with their content), links keep http(s)/mailto only, attributes other than
    ``href`` and ``color`` go. Line breaks survive as ``<br>``."""
    value = _CONTROL.sub(" ", text or "").strip()[: limit * 2]
    value = _BLOCK_END.sub("\n", value).replace("\r\n", "\n").replace("\n", "<br>")
    cleaned = nh3.clean(
        value,
        tags=CARD_TAGS,
        clean_content_tags={"script", "style", "title", "head"},
        attributes={"a": {"href"}, "font": {"color"}},
        attribute_filter=_color_only,
        url_schemes={"http", "https", "mailto"},
        link_rel=None,
        strip_comments=True,
    )
    if len(cleaned) > limit:
        # Cut outside a tag, and let nh3 close what the cut left open.
        cut = cleaned[:limit]
        if cut.rfind("<") > cut.rfind(">"):
            cut = cut[: cut.rfind("<")]
        cleaned = nh3.clean(
            cut + "…",
            tags=CARD_TAGS,
            attributes={"a": {"href"}, "font": {"color"}},
            link_rel=None,
        )
    return cleaned


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(instant: datetime, zone: str) -> str:
    return instant.astimezone(_zone(zone)).strftime("%a %d %b %H:%M")


def duration(minutes: int) -> str:
    minutes = abs(minutes)
    if minutes < 60:
        return f"{minutes}m"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h {rest}m" if rest else f"{hours}h"


def due_text(due: Due) -> str:
    if due.minutes_left > 0:
        text = f"{due.target} due in {duration(due.minutes_left)}"
    else:
        text = f"{due.target} overdue by {duration(due.minutes_left)}"
    return text + (" (paused: pending)" if due.paused else "")


def _colored(text: str, sla: str) -> str:
    color = SLA_COLOR.get(sla)
    return f'<font color="{color}">{text}</font>' if color else text


# -- building blocks --------------------------------------------------------------------------


def action(base_url: str, name: str, **params: str | int | None) -> dict[str, Any]:
    """An action that POSTs the event to ``/addon/action/<name>`` with ``params``."""
    return {
        "function": f"{base_url}/addon/action/{name}",
        "parameters": [
            {"key": key, "value": str(value)} for key, value in params.items() if value is not None
        ],
    }


def button(text: str, on_click: dict[str, Any]) -> dict[str, Any]:
    return {"text": text, "onClick": on_click}


def _buttons(*buttons: dict[str, Any]) -> Widget:
    return {"buttonList": {"buttons": list(buttons)}}


def _paragraph(text: str) -> Widget:
    return {"textParagraph": {"text": text}}


def _more(on_click: dict[str, Any]) -> Widget:
    return _buttons(button("more…", on_click))


def _section(widgets: list[Widget], header: str | None = None) -> dict[str, Any]:
    section: dict[str, Any] = {"widgets": widgets}
    if header:
        section["header"] = plain(header, 100)
    return section


def count_widgets(card: Mapping[str, Any]) -> int:
    total = 0
    for section in card.get("sections", []):
        for widget in section.get("widgets", []):
            total += 1
            for column in widget.get("columns", {}).get("columnItems", []):
                total += len(column.get("widgets", []))
    return total


def limit_widgets(card: Card, limit: int = MAX_WIDGETS) -> Card:
    """Cut ``card`` to ``limit`` widgets (Google drops every section from the one that passes
    100): the widgets after the ``limit - 1``th go, and a last line says there was more. Lists
    page themselves before this (``_fit``); this is the guarantee, not the usual path."""
    if count_widgets(card) <= limit:
        return card
    kept: list[dict[str, Any]] = []
    room = limit - 1
    for section in card.get("sections", []):
        widgets = []
        for widget in section.get("widgets", []):
            size = 1 + sum(
                len(column.get("widgets", []))
                for column in widget.get("columns", {}).get("columnItems", [])
            )
            if size > room:
                room = 0
                break
            widgets.append(widget)
            room -= size
        if widgets:
            kept.append({**section, "widgets": widgets})
        if room == 0:
            break
    notice = _paragraph("<i>more… (not shown: the card is full)</i>")
    if kept:
        kept[-1]["widgets"].append(notice)
    else:
        kept.append({"widgets": [notice]})
    return {**card, "sections": kept}


def _fit(
    rows: list[Widget], room: int, more: Callable[[int], dict[str, Any]], *, beyond: bool
) -> tuple[list[Widget], int]:
    """At most ``room`` widgets for a list: its rows, and a "more…" button when rows are cut or
    ``beyond`` them the list goes on (``more(n)``: the action that shows it from row ``n``).
    Returns the widgets and how many rows they kept."""
    if len(rows) <= room and not beyond:
        return rows, len(rows)
    keep = min(len(rows), max(room - 1, 0))
    return [*rows[:keep], _more(more(keep))], keep


def finish(card: Card) -> Card:
    return limit_widgets(card)


def ticket_row(row: TicketRow, base_url: str) -> Widget:
    """Number, status, priority, subject, customer, next deadline; opens the Gmail thread (the
    ticket card when the ticket has no thread)."""
    bottom = row.customer
    if row.due is not None:
        bottom = f"{row.customer} · {due_text(row.due)}"
    on_click: dict[str, Any] = (
        {"openLink": {"url": gmail_thread_url(row.thread_id)}}
        if row.thread_id
        else {"action": action(base_url, "open_ticket", ticket_id=row.id)}
    )
    return {
        "decoratedText": {
            "topLabel": plain(
                f"#{row.number} · {STATUS_LABEL[row.status]} · {PRIORITY_LABEL[row.priority]}"
            ),
            "text": _colored(esc(row.subject, 200), row.sla),
            "bottomLabel": plain(bottom),
            "onClick": on_click,
        }
    }


# -- answers ----------------------------------------------------------------------------------


def push_card(card: Card) -> dict[str, Any]:
    """A trigger's answer: the card to show."""
    return {"action": {"navigations": [{"pushCard": card}]}}


def render(
    card: Card | None = None, *, notification: str | None = None, push: bool = False
) -> dict[str, Any]:
    """An action's answer: replace the card (or push one on top), and/or show a notification."""
    result: dict[str, Any] = {}
    if card is not None:
        result["navigations"] = [{"pushCard" if push else "updateCard": card}]
    if notification:
        result["notification"] = {"text": plain(notification, 300)}
    return {"renderActions": {"action": result}}


def insert_into_draft(content: str, *, is_html: bool) -> dict[str, Any]:
    """Insert ``content`` at the cursor of the open draft (HTML stays editable: MUTABLE_HTML)."""
    return {
        "renderActions": {
            "hostAppAction": {
                "gmailAction": {
                    "updateDraftActionMarkup": {
                        "updateBody": {
                            "insertContents": [
                                {
                                    "content": content,
                                    "contentType": "MUTABLE_HTML" if is_html else "TEXT",
                                }
                            ],
                            "type": "IN_PLACE_INSERT",
                        }
                    }
                }
            }
        }
    }


# -- homepage and queues ----------------------------------------------------------------------


def _queue_widgets(queue: Queue, base_url: str, room: int) -> list[Widget]:
    if not queue.rows:
        return [_paragraph(f"<i>{esc(queue.empty_text)}</i>")]
    rows = [ticket_row(row, base_url) for row in queue.rows]

    def more(_kept: int) -> dict[str, Any]:
        # The whole queue, from its start, on a card of its own.
        return {"action": action(base_url, "queue", queue=queue.key, offset=0)}

    widgets, _ = _fit(rows, room, more, beyond=queue.capped or queue.total > len(queue.rows))
    return widgets


def homepage_card(view: HomeView, base_url: str) -> Card:
    """The queues: mine by SLA due, unassigned, breached, at risk; for leads each team's queue
    and the team's workload. A full list opens from each section's "more…"."""
    sections = []
    for queue in view.queues:
        if queue.key.startswith("team:"):
            continue
        sections.append(
            _section(_queue_widgets(queue, base_url, 7), f"{queue.title} ({queue.total_label})")
        )
    if view.lead:
        teams = [queue for queue in view.queues if queue.key.startswith("team:")]
        for queue in teams[:HOME_TEAMS]:
            sections.append(
                _section(_queue_widgets(queue, base_url, 4), f"{queue.title} ({queue.total_label})")
            )
        if len(teams) > HOME_TEAMS:
            sections.append(
                _section(
                    [
                        _buttons(
                            *(
                                button(
                                    plain(f"{queue.title} ({queue.total_label})", 60),
                                    {"action": action(base_url, "queue", queue=queue.key)},
                                )
                                for queue in teams[HOME_TEAMS:]
                            )
                        )
                    ],
                    "More teams",
                )
            )
        if view.workload:
            lines = "<br>".join(
                f"{esc(load.name, 80)}: <b>{load.running}</b> open" for load in view.workload
            )
            sections.append(_section([_paragraph(lines)], "Workload (running tickets)"))
    card = {
        "header": {"title": "Inboxdesk", "subtitle": plain(f"{view.agent_name} · queues")},
        "sections": sections,
        "fixedFooter": {
            "primaryButton": button("Refresh", {"action": action(base_url, "refresh", view="home")})
        },
    }
    return finish(card)


def queue_card(queue: Queue, base_url: str, *, offset: int) -> Card:
    """One page of a queue, pushed from a "more…"; pages on with its own "more…"."""
    rows = [ticket_row(row, base_url) for row in queue.rows]

    def more(kept: int) -> dict[str, Any]:
        return {"action": action(base_url, "queue", queue=queue.key, offset=offset + kept)}

    beyond = queue.capped or queue.total > offset + len(queue.rows)
    widgets, kept = _fit(rows, MAX_WIDGETS, more, beyond=beyond)
    subtitle = f"{offset + 1}–{offset + kept} of {queue.total_label}" if kept else queue.total_label
    card = {
        "header": {"title": plain(queue.title, 100), "subtitle": subtitle},
        "sections": [_section(widgets or [_paragraph(f"<i>{esc(queue.empty_text)}</i>")])],
    }
    return finish(card)


# -- the ticket -------------------------------------------------------------------------------


def _ticket_params(view: TicketView) -> dict[str, str | int | None]:
    return {"ticket_id": view.id, "version": view.version, "thread_id": view.thread_id}


def _also_here(colleagues: Iterable[Colleague]) -> Widget | None:
    names = [
        f"{esc(c.name, 80)} ({'drafting a reply' if c.drafting else 'viewing'})" for c in colleagues
    ]
    if not names:
        return None
    return _paragraph(f'<font color="#b06000"><b>Also here:</b> {", ".join(names)}</font>')


def _sla_widgets(view: TicketView) -> list[Widget]:
    if not view.dues:
        state = "met" if view.status in (Status.RESOLVED, Status.CLOSED) else "no deadline"
        return [{"decoratedText": {"topLabel": "SLA", "text": state}}]
    widgets = []
    for due in view.dues:
        if due.minutes_left > 0:
            text = f"{duration(due.minutes_left)} left"
        else:
            text = f"overdue by {duration(due.minutes_left)}"
        sla = "breached" if due.minutes_left <= 0 else view.sla
        widgets.append(
            {
                "decoratedText": {
                    "topLabel": f"SLA {due.target}",
                    "text": _colored(f"<b>{text}</b> (business time)", sla),
                    "bottomLabel": plain(
                        f"due {local_time(due.at, view.time_zone)}"
                        + (" · clock paused while pending" if due.paused else "")
                    ),
                }
            }
        )
    return widgets


_STATUS_BUTTON = {
    Status.OPEN: "Open",
    Status.PENDING: "Pending",
    Status.RESOLVED: "Resolve",
    Status.CLOSED: "Close",
}


def _status_widgets(view: TicketView, base_url: str) -> list[Widget]:
    if not view.allowed_statuses:
        return [_paragraph("<i>Closed tickets are final: a new message opens a new ticket.</i>")]
    buttons = []
    for status in view.allowed_statuses:
        label = _STATUS_BUTTON[status]
        if status == Status.OPEN and view.status in (Status.PENDING, Status.RESOLVED):
            label = "Reopen"
        buttons.append(
            button(
                label,
                {
                    "action": action(
                        base_url, "set_status", status=status.value, **_ticket_params(view)
                    )
                },
            )
        )
    return [_buttons(*buttons)]


def _assignee_widget(view: TicketView, base_url: str) -> Widget:
    current = view.assignee.id if view.assignee else None
    if not view.assignable:
        name = view.assignee.name if view.assignee else "nobody"
        return {
            "decoratedText": {
                "topLabel": "Assignee",
                "text": esc(name, 100),
                "bottomLabel": "Ask a lead to reassign",
            }
        }
    items = [{"text": "Unassigned", "value": NOBODY, "selected": current is None}]
    if view.assignee and all(choice.id != view.assignee.id for choice in view.assignable):
        items.append(
            {
                "text": plain(view.assignee.name, 80),
                "value": str(view.assignee.id),
                "selected": True,
            }
        )
    for choice in view.assignable:
        label = "Me" if choice.id == view.viewer_id else choice.name
        items.append(
            {"text": plain(label, 80), "value": str(choice.id), "selected": choice.id == current}
        )
    return {
        "selectionInput": {
            "name": "assignee",
            "label": "Assignee",
            "type": "DROPDOWN",
            "items": items,
            "onChangeAction": action(base_url, "assign", **_ticket_params(view)),
        }
    }


def _priority_widget(view: TicketView, base_url: str) -> Widget:
    return {
        "selectionInput": {
            "name": "priority",
            "label": "Priority",
            "type": "DROPDOWN",
            "items": [
                {"text": label, "value": priority.value, "selected": priority == view.priority}
                for priority, label in PRIORITY_LABEL.items()
            ],
            "onChangeAction": action(base_url, "set_priority", **_ticket_params(view)),
        }
    }


def _note_widget(author: str, at: datetime, body: str, zone: str) -> Widget:
    return {
        "decoratedText": {
            "topLabel": plain(f"{author} · {local_time(at, zone)}"),
            "text": esc(body, 1500),
            "wrapText": True,
        }
    }


def _template_widget(
    item: TemplateItem,
    base_url: str,
    *,
    ticket_id: int | None,
    thread_id: str | None,
    label: str | None = None,
) -> Widget:
    return {
        "decoratedText": {
            "topLabel": plain(label or item.language.upper()),
            "text": esc(item.name, 200),
            "bottomLabel": plain(item.excerpt),
            "button": button(
                "Insert",
                {
                    "action": action(
                        base_url,
                        "insert_template",
                        template_id=item.id,
                        ticket_id=ticket_id,
                        thread_id=thread_id,
                    )
                },
            ),
        }
    }


def ticket_card(view: TicketView, base_url: str) -> Card:
    """The open thread's ticket: status, SLA, assignment, priority, tags, customer, notes,
    collisions and suggested replies. Every action carries the ticket id, the version shown and
    the thread, and the server checks all three again."""
    params = _ticket_params(view)
    top: list[Widget] = []
    also_here = _also_here(view.also_here)
    if also_here is not None:
        top.append(also_here)
    top.extend(_sla_widgets(view))
    sections = [
        _section(top),
        _section(_status_widgets(view, base_url), "Status"),
        _section(
            [
                _assignee_widget(view, base_url),
                _priority_widget(view, base_url),
                {
                    "textInput": {
                        "name": "tags",
                        "label": "Tags (comma-separated)",
                        "value": ", ".join(view.tags),
                    }
                },
                _buttons(button("Save tags", {"action": action(base_url, "set_tags", **params)})),
            ],
            "Assignment",
        ),
    ]

    customer: list[Widget] = [
        {
            "decoratedText": {
                "topLabel": "Customer",
                "text": esc(view.customer_name or view.customer_email, 200),
                "bottomLabel": plain(f"{view.customer_email} · {view.segment}"),
            }
        }
    ]
    if view.earlier:
        customer.append(_paragraph("<b>Earlier tickets</b>"))
        customer.extend(ticket_row(row, base_url) for row in view.earlier)
        if view.earlier_total > len(view.earlier):
            customer.append(
                _more({"action": action(base_url, "queue", queue=f"customer:{view.customer_id}")})
            )
    sections.append(_section(customer, "Customer"))

    if view.latest_message:
        sections.append(
            _section([_paragraph(mail_html(view.latest_message, 600))], "Latest message")
        )

    notes: list[Widget] = [
        _note_widget(note.author, note.at, note.body, view.time_zone) for note in view.notes
    ]
    if view.notes_total > len(view.notes):
        notes.append(
            _more(
                {
                    "action": action(
                        base_url,
                        "notes",
                        ticket_id=view.id,
                        thread_id=view.thread_id,
                        offset=0,
                    )
                }
            )
        )
    notes.append({"textInput": {"name": "note", "label": "Internal note", "type": "MULTIPLE_LINE"}})
    notes.append(_buttons(button("Add note", {"action": action(base_url, "add_note", **params)})))
    sections.append(_section(notes, f"Internal notes ({view.notes_total})"))

    if view.suggestions:
        sections.append(
            _section(
                [
                    _template_widget(
                        item,
                        base_url,
                        ticket_id=view.id,
                        thread_id=view.thread_id,
                        label="Suggested reply",
                    )
                    for item in view.suggestions
                ],
                "Suggested replies",
            )
        )

    card = {
        "header": {
            "title": (
                f"#{view.number} · {STATUS_LABEL[view.status]} · {PRIORITY_LABEL[view.priority]}"
            ),
            "subtitle": plain(view.subject, 120),
        },
        "sections": sections,
        "fixedFooter": {
            "primaryButton": button(
                "Refresh", {"action": action(base_url, "refresh", view="ticket", **params)}
            ),
            "secondaryButton": button("Queues", {"action": action(base_url, "open_home")}),
        },
    }
    return finish(card)


def notes_card(view: NotesView, base_url: str) -> Card:
    """All internal notes of a ticket, newest first, a page at a time."""
    rows = [_note_widget(n.author, n.at, n.body, view.time_zone) for n in view.notes]

    def more(kept: int) -> dict[str, Any]:
        return {
            "action": action(
                base_url,
                "notes",
                ticket_id=view.ticket_id,
                thread_id=view.thread_id,
                offset=view.offset + kept,
            )
        }

    widgets, _ = _fit(rows, MAX_WIDGETS, more, beyond=view.total > view.offset + len(rows))
    card = {
        "header": {"title": f"#{view.number} · internal notes", "subtitle": f"{view.total} notes"},
        "sections": [_section(widgets or [_paragraph("<i>No notes yet.</i>")])],
    }
    return finish(card)


# -- a thread that is not a ticket ------------------------------------------------------------


def not_ticket_card(view: ThreadView, base_url: str) -> Card:
    """The open conversation has no ticket: a form to open one for it."""
    if not view.mailboxes:
        widgets = [_paragraph("No mailbox is connected to Inboxdesk yet: ask an admin.")]
        return finish({"header": {"title": "Not a ticket"}, "sections": [_section(widgets)]})
    widgets: list[Widget] = [
        _paragraph("This conversation is not a ticket. Create one to track it."),
        {
            "textInput": {
                "name": "customer_email",
                "label": "Customer e-mail",
                "value": plain(view.sender_email, 320),
            }
        },
        {
            "textInput": {
                "name": "customer_name",
                "label": "Customer name",
                "value": plain(view.sender_name, 200),
            }
        },
        {"textInput": {"name": "subject", "label": "Subject", "value": plain(view.subject, 998)}},
    ]
    mailbox_id: int | None = view.mailboxes[0].id
    if len(view.mailboxes) > 1:
        mailbox_id = None
        widgets.append(
            {
                "selectionInput": {
                    "name": "mailbox",
                    "label": "Mailbox",
                    "type": "DROPDOWN",
                    "items": [
                        {"text": plain(m.email), "value": str(m.id), "selected": index == 0}
                        for index, m in enumerate(view.mailboxes)
                    ],
                }
            }
        )
    widgets.append(
        _buttons(
            button(
                "Create ticket",
                {
                    "action": action(
                        base_url,
                        "create_ticket",
                        thread_id=view.thread_id,
                        message_id=view.message_id,
                        mailbox_id=mailbox_id,
                    )
                },
            )
        )
    )
    card = {
        "header": {"title": "Not a ticket"},
        "sections": [_section(widgets)],
        "fixedFooter": {
            "primaryButton": button("Queues", {"action": action(base_url, "open_home")})
        },
    }
    return finish(card)


# -- compose ----------------------------------------------------------------------------------


def compose_card(view: ComposeView, base_url: str) -> Card:
    """The template picker of the reply being written: search, the ticket's suggestions first,
    then the templates; Insert renders one for the ticket into the draft."""
    context = {"ticket_id": view.ticket_id, "thread_id": view.thread_id}
    search = [
        {
            "textInput": {
                "name": "q",
                "label": "Search templates",
                "value": plain(view.query, 200),
            }
        },
        _buttons(button("Search", {"action": action(base_url, "search_templates", **context)})),
    ]
    sections = [_section(search)]
    if view.suggestions:
        sections.append(
            _section(
                [
                    _template_widget(
                        item,
                        base_url,
                        ticket_id=view.ticket_id,
                        thread_id=view.thread_id,
                        label="Suggested",
                    )
                    for item in view.suggestions
                ],
                f"Suggested for #{view.number}",
            )
        )
    rows = [
        _template_widget(item, base_url, ticket_id=view.ticket_id, thread_id=view.thread_id)
        for item in view.templates
    ]

    def more(kept: int) -> dict[str, Any]:
        return {
            "action": action(
                base_url, "search_templates", q=view.query, offset=view.offset + kept, **context
            )
        }

    room = MAX_WIDGETS - sum(len(s["widgets"]) for s in sections)
    widgets, _ = _fit(rows, room, more, beyond=view.total > view.offset + len(rows))
    title = f"Results for “{view.query}”" if view.query else "Templates"
    sections.append(
        _section(widgets or [_paragraph("<i>No template matches.</i>")], f"{title} ({view.total})")
    )
    subtitle = (
        plain(f"#{view.number} · {view.subject}", 120)
        if view.number is not None
        else "No ticket: customer fields stay empty"
    )
    return finish(
        {"header": {"title": "Reply templates", "subtitle": subtitle}, "sections": sections}
    )


# -- the caller is not an agent; something went wrong ------------------------------------------


def not_agent_card(email: str) -> Card:
    text = (
        f"<b>{esc(email, 320)}</b> is not an Inboxdesk agent (or the account is deactivated)."
        "<br><br>Ask an Inboxdesk admin to add you: <i>inboxdesk agent add "
        f'{esc(email, 320)} --name "Your Name" --role agent</i>'
    )
    return finish(
        {
            "header": {"title": "Inboxdesk", "subtitle": "Not an agent"},
            "sections": [_section([_paragraph(text)])],
        }
    )


def error_card(message: str) -> Card:
    return finish(
        {
            "header": {"title": "Inboxdesk", "subtitle": "Something went wrong"},
            "sections": [_section([_paragraph(f'<font color="#d93025">{esc(message)}</font>')])],
        }
    )
