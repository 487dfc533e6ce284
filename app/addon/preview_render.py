"""Card JSON → HTML, for the local preview (``/preview``): the sidebar as Gmail would draw it.

Covers the widgets of ``google.apps.card.v1`` the add-on uses and a few more (header, sections
with collapsing, ``textParagraph``, ``decoratedText``, ``buttonList``, ``selectionInput``,
``textInput``, ``divider``, ``image``, ``columns``, ``chipList``, ``dateTimePicker``, card
actions, the fixed footer). A widget it does not know is drawn as a visible note, not dropped.

Text that cards format (``textParagraph.text``, ``decoratedText`` labels) is reduced again to
Google's card HTML subset — bold, italics, underline, strikethrough, font colour, links, line
breaks — with nh3; everything else (titles, button labels, values) is escaped. What a click does
is kept in ``data-onclick`` (the widget's ``onClick`` JSON) for the page's script, which builds
the event object and posts it to the add-on endpoint the action names.
"""

from __future__ import annotations

import html
import json
from itertools import count
from typing import Any

import nh3

# Google's "Format text in cards": <b> <i> <u> <s>/<strike> <font color> <a href> <br>.
CARD_TAGS = frozenset({"b", "i", "u", "s", "strike", "font", "a", "br"})
CARD_ATTRIBUTES = {"font": {"color"}, "a": {"href"}}
LINK_SCHEMES = frozenset({"http", "https", "mailto"})


def card_text(text: str | None) -> str:
    """Formatted card text as safe HTML: the card subset kept, the rest stripped."""
    if not text:
        return ""
    cleaned = nh3.clean(
        text,
        tags=set(CARD_TAGS),
        attributes={tag: set(names) for tag, names in CARD_ATTRIBUTES.items()},
        url_schemes=set(LINK_SCHEMES),
        link_rel="noopener noreferrer",
    )
    return cleaned.replace("\n", "<br>")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _data(value: Any) -> str:
    """A JSON value for a ``data-*`` attribute (escaped; the script JSON.parses it)."""
    return _e(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _color(color: dict[str, Any] | None) -> str:
    if not color:
        return ""
    parts = [round(float(color.get(c, 0)) * 255) for c in ("red", "green", "blue")]
    alpha = float(color.get("alpha", 1))
    return f"rgba({parts[0]},{parts[1]},{parts[2]},{alpha:g})"


def _local_image(url: str | None) -> bool:
    # The preview loads nothing from elsewhere: images on other hosts are shown as a placeholder.
    return bool(url) and (str(url).startswith("data:image/") or str(url).startswith("/"))


class CardRenderer:
    """One card (and the cards its buttons open with ``onClick.card``) as an HTML fragment."""

    def __init__(self) -> None:
        self._ids = count(1)
        self._nested: list[str] = []

    def render(self, card: dict[str, Any]) -> str:
        body = self._card(card)
        return body + "".join(self._nested)

    # --- card ------------------------------------------------------------------------------

    def _card(self, card: dict[str, Any]) -> str:
        name = card.get("name")
        out = [f'<div class="card" data-card-name="{_e(name)}">' if name else '<div class="card">']
        header = card.get("header")
        if header:
            out.append(self._header(header))
        actions = card.get("cardActions") or []
        if actions:
            items = "".join(
                f'<button type="button" class="menu-item" data-onclick="{_data(a.get("onClick"))}">'
                f"{_e(a.get('actionLabel'))}</button>"
                for a in actions
            )
            out.append(
                f'<details class="card-actions"><summary title="More">⋮</summary>{items}</details>'
            )
        sections = card.get("sections") or []
        divider = card.get("sectionDividerStyle", "SOLID_DIVIDER")
        for index, section in enumerate(sections):
            if index and divider != "NO_DIVIDER":
                out.append('<hr class="section-divider">')
            out.append(self._section(section))
        footer = card.get("fixedFooter")
        if footer:
            buttons = [footer.get("primaryButton"), footer.get("secondaryButton")]
            out.append(
                '<div class="fixed-footer">'
                + "".join(self._button(b, primary=i == 0) for i, b in enumerate(buttons) if b)
                + "</div>"
            )
        out.append("</div>")
        return "".join(out)

    def _header(self, header: dict[str, Any]) -> str:
        image = ""
        if header.get("imageUrl"):
            shape = "circle" if header.get("imageType") == "CIRCLE" else "square"
            if _local_image(header["imageUrl"]):
                image = (
                    f'<img class="header-image {shape}" src="{_e(header["imageUrl"])}" '
                    f'alt="{_e(header.get("imageAltText"))}">'
                )
            else:
                image = f'<span class="header-image {shape} placeholder" aria-hidden="true"></span>'
        subtitle = header.get("subtitle")
        return (
            f'<div class="card-header">{image}<div>'
            f'<div class="card-title">{_e(header.get("title"))}</div>'
            + (f'<div class="card-subtitle">{_e(subtitle)}</div>' if subtitle else "")
            + "</div></div>"
        )

    def _section(self, section: dict[str, Any]) -> str:
        out = ['<div class="section">']
        if section.get("header"):
            out.append(f'<div class="section-header">{card_text(section["header"])}</div>')
        widgets = [self._widget(w) for w in section.get("widgets") or []]
        if section.get("collapsible"):
            shown = int(section.get("uncollapsibleWidgetsCount") or 0)
            out.extend(widgets[:shown])
            if widgets[shown:]:
                out.append(
                    '<details class="collapsed"><summary>Show more</summary>'
                    + "".join(widgets[shown:])
                    + "</details>"
                )
        else:
            out.extend(widgets)
        out.append("</div>")
        return "".join(out)

    # --- widgets ---------------------------------------------------------------------------

    def _widget(self, widget: dict[str, Any]) -> str:
        for kind, draw in (
            ("textParagraph", self._text_paragraph),
            ("decoratedText", self._decorated_text),
            ("buttonList", self._button_list),
            ("selectionInput", self._selection_input),
            ("textInput", self._text_input),
            ("divider", self._divider),
            ("image", self._image),
            ("columns", self._columns),
            ("chipList", self._chip_list),
            ("dateTimePicker", self._date_time_picker),
        ):
            if kind in widget:
                return draw(widget[kind] or {})
        kinds = ", ".join(k for k in widget if k != "horizontalAlignment") or "empty"
        return f'<div class="widget unsupported">(not drawn by the preview: {_e(kinds)})</div>'

    def _text_paragraph(self, widget: dict[str, Any]) -> str:
        return f'<div class="widget text-paragraph">{card_text(widget.get("text"))}</div>'

    def _decorated_text(self, widget: dict[str, Any]) -> str:
        icon = widget.get("startIcon") or widget.get("icon")
        parts = []
        if icon:
            label = icon.get("knownIcon") or icon.get("materialIcon", {}).get("name") or ""
            parts.append(f'<span class="icon" title="{_e(label)}">{_e(_icon_glyph(label))}</span>')
        text = [
            f'<div class="top-label">{card_text(widget["topLabel"])}</div>'
            if widget.get("topLabel")
            else "",
            f'<div class="text">{card_text(widget.get("text"))}</div>',
            f'<div class="bottom-label">{card_text(widget["bottomLabel"])}</div>'
            if widget.get("bottomLabel")
            else "",
        ]
        wrap = " wrap" if widget.get("wrapText") else ""
        parts.append(f'<div class="decorated-body{wrap}">{"".join(text)}</div>')
        if widget.get("button"):
            parts.append(self._button(widget["button"]))
        if widget.get("switchControl"):
            parts.append(self._switch(widget["switchControl"]))
        click = widget.get("onClick")
        if click:
            return (
                f'<div class="widget decorated-text clickable" role="button" tabindex="0" '
                f'data-onclick="{_data(self._click(click))}">{"".join(parts)}</div>'
            )
        return f'<div class="widget decorated-text">{"".join(parts)}</div>'

    def _switch(self, switch: dict[str, Any]) -> str:
        checked = " checked" if switch.get("selected") else ""
        change = switch.get("onChangeAction")
        on_change = f' data-onchange="{_data(change)}"' if change else ""
        return (
            f'<input type="checkbox" class="switch" data-form-input="switch" '
            f'name="{_e(switch.get("name"))}" value="{_e(switch.get("value", "true"))}"'
            f"{checked}{on_change}>"
        )

    def _button_list(self, widget: dict[str, Any]) -> str:
        buttons = "".join(self._button(b) for b in widget.get("buttons") or [])
        return f'<div class="widget button-list">{buttons}</div>'

    def _button(self, button: dict[str, Any], *, primary: bool = False) -> str:
        kind = str(button.get("type") or ("FILLED" if button.get("color") or primary else ""))
        classes = ["btn", kind.lower().replace("_", "-")] if kind else ["btn"]
        style = ""
        if button.get("color"):
            style = f' style="background:{_color(button["color"])}"'
        disabled = " disabled" if button.get("disabled") else ""
        click = button.get("onClick")
        data = f' data-onclick="{_data(self._click(click))}"' if click else ""
        label = button.get("text") or button.get("altText") or ""
        if not label and button.get("icon"):
            label = _icon_glyph(button["icon"].get("knownIcon", ""))
        return (
            f'<button type="button" class="{" ".join(classes)}"{style}{data}{disabled}'
            f' title="{_e(button.get("altText") or "")}">{_e(label)}</button>'
        )

    def _click(self, click: dict[str, Any]) -> dict[str, Any]:
        """The onClick as the page's script needs it: a card to open is rendered here."""
        if "card" in click:
            template_id = f"nested-card-{next(self._ids)}"
            self._nested.append(
                f'<template id="{template_id}">{self._card(click["card"])}</template>'
            )
            return {"cardTemplate": template_id}
        if "overflowMenu" in click:
            return {
                "overflowMenu": [
                    {"text": item.get("text"), "onClick": self._click(item.get("onClick") or {})}
                    for item in click["overflowMenu"].get("items") or []
                ]
            }
        return click

    def _selection_input(self, widget: dict[str, Any]) -> str:
        name = _e(widget.get("name"))
        kind = widget.get("type") or "CHECK_BOX"
        change = widget.get("onChangeAction")
        on_change = f' data-onchange="{_data(change)}"' if change else ""
        label = f'<label class="input-label">{_e(widget.get("label"))}</label>'
        items = widget.get("items") or []
        if kind == "DROPDOWN":
            options = "".join(
                f'<option value="{_e(item.get("value"))}"'
                f"{' selected' if item.get('selected') else ''}>{_e(item.get('text'))}</option>"
                for item in items
            )
            return (
                f'<div class="widget selection-input">{label}'
                f'<select name="{name}" data-form-input="dropdown"{on_change}>{options}</select>'
                "</div>"
            )
        input_type = "radio" if kind == "RADIO_BUTTON" else "checkbox"
        boxes = "".join(
            f'<label class="choice"><input type="{input_type}" name="{name}" '
            f'data-form-input="{input_type}" value="{_e(item.get("value"))}"'
            f"{' checked' if item.get('selected') else ''}{on_change}> "
            f"{_e(item.get('text'))}</label>"
            for item in items
        )
        return f'<div class="widget selection-input {kind.lower()}">{label}{boxes}</div>'

    def _text_input(self, widget: dict[str, Any]) -> str:
        name = _e(widget.get("name"))
        hint = widget.get("hintText")
        placeholder = _e(widget.get("placeholderText") or "")
        change = widget.get("onChangeAction")
        on_change = f' data-onchange="{_data(change)}"' if change else ""
        value = widget.get("value") or ""
        if widget.get("type") == "MULTIPLE_LINE":
            field = (
                f'<textarea name="{name}" rows="3" data-form-input="text" '
                f'placeholder="{placeholder}"{on_change}>{_e(value)}</textarea>'
            )
        else:
            field = (
                f'<input type="text" name="{name}" data-form-input="text" value="{_e(value)}" '
                f'placeholder="{placeholder}"{on_change}>'
            )
        return (
            f'<div class="widget text-input"><label class="input-label">'
            f"{_e(widget.get('label'))}</label>{field}"
            + (f'<div class="hint">{_e(hint)}</div>' if hint else "")
            + "</div>"
        )

    def _divider(self, _widget: dict[str, Any]) -> str:
        return '<hr class="widget divider">'

    def _image(self, widget: dict[str, Any]) -> str:
        url = widget.get("imageUrl")
        if _local_image(url):
            return f'<img class="widget image" src="{_e(url)}" alt="{_e(widget.get("altText"))}">'
        alt = _e(widget.get("altText") or url)
        return f'<div class="widget image placeholder">[image: {alt}]</div>'

    def _columns(self, widget: dict[str, Any]) -> str:
        columns = "".join(
            '<div class="column">'
            + "".join(self._widget(w) for w in column.get("widgets") or [])
            + "</div>"
            for column in widget.get("columnItems") or []
        )
        return f'<div class="widget columns">{columns}</div>'

    def _chip_list(self, widget: dict[str, Any]) -> str:
        chips = "".join(
            '<button type="button" class="chip" '
            + (
                f'data-onclick="{_data(self._click(chip["onClick"]))}"'
                if chip.get("onClick")
                else ""
            )
            + (" disabled" if chip.get("disabled") else "")
            + f">{_e(chip.get('label'))}</button>"
            for chip in widget.get("chips") or []
        )
        return f'<div class="widget chip-list">{chips}</div>'

    def _date_time_picker(self, widget: dict[str, Any]) -> str:
        kind = {"DATE_ONLY": "date", "TIME_ONLY": "time"}.get(
            widget.get("type", ""), "datetime-local"
        )
        return (
            f'<div class="widget date-time-picker"><label class="input-label">'
            f"{_e(widget.get('label'))}</label>"
            f'<input type="{kind}" name="{_e(widget.get("name"))}" data-form-input="{kind}">'
            "</div>"
        )


_ICONS = {
    "PERSON": "👤",
    "EMAIL": "✉",
    "CLOCK": "⏱",
    "BOOKMARK": "🔖",
    "DESCRIPTION": "📄",
    "STAR": "★",
    "INVITE": "➕",
    "MULTIPLE_PEOPLE": "👥",
    "TICKET": "🎫",
    "OPEN_IN_NEW": "↗",
    "STORE": "🏬",
    "PHONE": "☎",
}


def _icon_glyph(name: str) -> str:
    return _ICONS.get(name.upper(), "•") if name else ""


def render_card(card: dict[str, Any]) -> str:
    """One card as an HTML fragment for the preview's sidebar."""
    return CardRenderer().render(card)


def render_navigations(response: dict[str, Any]) -> list[str | None]:
    """The HTML of each card a render action pushes or updates (None for the other steps),
    index for index with its ``navigations`` — whichever wrapper the endpoint answered with
    (``{"action": …}`` or ``{"renderActions": {"action": …}}``)."""
    action = (response.get("renderActions") or response).get("action") or {}
    rendered: list[str | None] = []
    for step in action.get("navigations") or []:
        card = step.get("pushCard") or step.get("updateCard")
        rendered.append(render_card(card) if isinstance(card, dict) else None)
    return rendered
