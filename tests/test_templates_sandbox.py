"""The template sandbox: validation on save, rendering, and the known escape payloads.

Each payload is checked at both layers: the static policy refuses it on save (or, when it is
harmless to store, rendering makes it inert), and the runtime sandbox alone
(``_render_without_policy``) also renders it inert and quickly.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from jinja2.defaults import DEFAULT_FILTERS

from templates_replies.sandbox import (
    ALLOWED_FILTERS,
    MAX_OUTPUT_CHARS,
    MAX_TEMPLATE_CHARS,
    RENDER_TIME_LIMIT_SECONDS,
    RenderedTemplate,
    TemplateInvalid,
    _compile,
    _render_without_policy,
    known_variables,
    render_template,
    validate_template,
)

CONTEXT: dict[str, Any] = {
    "customer": {
        "name": "Иван Петров",
        "first_name": "Иван",
        "email": "ivan@client.test",
        "segment": "vip",
    },
    "ticket": {
        "number": 1042,
        "subject": "Не проходит оплата",
        "status": "открыт",
        "priority": "высокий",
        "due": "11:00, понедельник, 23 ноября",
    },
    "agent": {"name": "Анна Смирнова", "first_name": "Анна", "signature": "—\nАнна, поддержка"},
    "mailbox": {"name": "Shop Support", "address": "support@shop.test"},
    "company": {"name": "Shop"},
    "greeting": "Доброе утро",
    "now": "09:15, понедельник, 23 ноября",
}

# What a leak of Python internals looks like in rendered text.
LEAK_MARKERS = (
    "<class",
    "<function",
    "<built-in",
    "<module",
    "<bound",
    "object at 0x",
    "__",
    "Popen",
    "environ",
    "TemplateReference",
    "Context",
)


def context_with(**groups: dict[str, Any]) -> dict[str, Any]:
    merged = {
        key: dict(value) if isinstance(value, dict) else value for key, value in CONTEXT.items()
    }
    for name, values in groups.items():
        merged[name] = {**merged[name], **values}
    return merged


def render(
    body: str, *, is_html: bool = False, context: dict[str, Any] | None = None
) -> RenderedTemplate:
    return render_template(body=body, subject=None, is_html=is_html, context=context or CONTEXT)


def invalid(body: str, *, subject: str | None = None, is_html: bool = False) -> dict[str, Any]:
    with pytest.raises(TemplateInvalid) as caught:
        validate_template(body=body, subject=subject, is_html=is_html)
    assert caught.value.status_code == 422
    assert caught.value.code == "template_invalid"
    assert caught.value.details is not None
    return caught.value.details


def assert_no_leak(text: str) -> None:
    for marker in LEAK_MARKERS:
        assert marker not in text, f"{marker!r} leaked in {text[:200]!r}"


# -- variables and plain rendering --------------------------------------------------------------


def test_known_variables_are_the_documented_ones() -> None:
    """The variables the issue names, sorted, as the 422 lists them."""
    assert known_variables() == [
        "agent.first_name",
        "agent.name",
        "agent.signature",
        "company.name",
        "customer.email",
        "customer.first_name",
        "customer.name",
        "customer.segment",
        "greeting",
        "mailbox.address",
        "mailbox.name",
        "now",
        "ticket.due",
        "ticket.number",
        "ticket.priority",
        "ticket.status",
        "ticket.subject",
    ]


def test_every_variable_renders() -> None:
    """Each known variable reaches the output with its value, nothing else added."""
    body = " | ".join("{{ " + name + " }}" for name in known_variables())
    validate_template(body=body, subject=None, is_html=False)
    result = render(body)
    assert result.body == (
        "Анна | Анна Смирнова | —\nАнна, поддержка | Shop | ivan@client.test | Иван | Иван Петров"
        " | vip | Доброе утро | support@shop.test | Shop Support | 09:15, понедельник, 23 ноября"
        " | 11:00, понедельник, 23 ноября | 1042 | высокий | открыт | Не проходит оплата"
    )
    assert result.warnings == []


def test_subject_is_rendered_as_one_unescaped_line() -> None:
    """The subject is a header: never HTML-escaped, newlines folded into spaces."""
    ctx = context_with(ticket={"subject": "Tom & Jerry <b>\r\nBcc: x@evil.test"})
    result = render_template(
        body="<p>{{ ticket.subject }}</p>",
        subject="Re: {{ ticket.subject }} [#{{ ticket.number }}]",
        is_html=True,
        context=ctx,
    )
    assert result.subject == "Re: Tom & Jerry <b> Bcc: x@evil.test [#1042]"
    assert result.body == "<p>Tom &amp; Jerry &lt;b&gt;\r\nBcc: x@evil.test</p>"
    assert result.is_html is True


def test_html_bodies_escape_values_and_text_bodies_do_not() -> None:
    """A customer's name cannot inject markup into an HTML reply; plain text stays verbatim."""
    ctx = context_with(customer={"name": '<img src=x onerror="alert(1)">'})
    assert render("<p>{{ customer.name }}</p>", is_html=True, context=ctx).body == (
        "<p>&lt;img src=x onerror=&#34;alert(1)&#34;&gt;</p>"
    )
    assert render("{{ customer.name }}", context=ctx).body == '<img src=x onerror="alert(1)">'


def test_empty_value_renders_empty_with_a_warning() -> None:
    """A missing customer name is no error: empty text and a warning naming the variable."""
    ctx = context_with(customer={"name": "", "first_name": ""})
    result = render("Hello {{ customer.name }}!", context=ctx)
    assert result.body == "Hello !"
    assert result.warnings == ["customer.name is empty"]


def test_default_and_if_handle_an_empty_value_without_warning() -> None:
    """Authors can plan for missing values: `default` and `{% if %}` see them as missing."""
    ctx = context_with(customer={"name": "", "first_name": ""})
    body = "{{ customer.first_name|default('there') }}{% if customer.name %}!{% endif %}"
    result = render(body, context=ctx)
    assert result.body == "there"
    assert result.warnings == []


def test_missing_group_in_context_renders_empty_with_warning() -> None:
    """A context without a ticket (a preview) still renders; the gap is reported."""
    ctx = {key: value for key, value in CONTEXT.items() if key != "ticket"}
    result = render("#{{ ticket.number }} {{ greeting }}", context=ctx)
    assert result.body == "# Доброе утро"
    assert len(result.warnings) == 1
    assert "ticket" in result.warnings[0]


def test_subject_warnings_are_labelled() -> None:
    """Warnings say which field they come from."""
    ctx = context_with(ticket={"subject": ""})
    result = render_template(
        body="{{ ticket.subject }}", subject="Re: {{ ticket.subject }}", is_html=False, context=ctx
    )
    assert result.warnings == ["subject: ticket.subject is empty", "ticket.subject is empty"]
    assert result.subject == "Re:"


def test_jinja_features_authors_need_still_work() -> None:
    """Loops with `loop`, macros, `{% set %}` blocks, allowed filters and tests all render."""
    body = (
        "{% macro sign(name) %}-- {{ name|upper }}{% endmacro %}"
        "{% for c in customer.first_name %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{% endfor %} "
        "{% set intro %}{{ greeting }}, {{ customer.first_name }}{% endset %}{{ intro|trim }} "
        "{{ ticket.subject|truncate(9, true, '…', 0) }} {{ customer.name|replace('Иван', 'И.') }} "
        "{{ customer.name|list|join('.') }} {{ ticket.number is number }} "
        "{{ (ticket.number + 8) // 10 }} {{ customer.name[0] }}{{ customer['email'][-4:] }}"
        "{{ customer.name[-1] }} "
        "{% for x in ['a', 'b'] %}{{ x }}{% endfor %}{{ 'b' in ('a', 'b') }} {{ sign('ok') }}"
    )
    validate_template(body=body, subject=None, is_html=False)
    result = render(body)
    assert result.warnings == []
    assert result.body == (
        "1a2b3a4b Доброе утро, Иван Не прохо… И. Петров И.в.а.н. .П.е.т.р.о.в True 105 И"
        "testв abTrue -- OK"
    )


def test_compiled_templates_are_cached() -> None:
    """The same source compiles once (renders then cost well under the 2 ms budget)."""
    source = "{{ greeting }}, {{ customer.first_name }} (cache test)"
    assert _compile(source, False) is _compile(source, False)
    assert _compile(source, True) is not _compile(source, False)


def test_render_is_fast_for_a_typical_template() -> None:
    """p95 of a realistic HTML reply stays within the issue's 2 ms budget."""
    body = (
        "<p>{{ greeting }}, {{ customer.first_name|default('клиент') }}!</p>\n"
        "<p>Ваше обращение #{{ ticket.number }} «{{ ticket.subject }}»: {{ ticket.status }}.</p>\n"
        "{% if ticket.due %}<p>Ответим до {{ ticket.due }}.</p>{% endif %}\n"
        "<p>{{ agent.name }}, {{ company.name }}</p><pre>{{ agent.signature }}</pre>\n"
    ) * 4
    subject = "Re: {{ ticket.subject }} [#{{ ticket.number }}]"
    timings = []
    for _ in range(300):
        started = time.perf_counter()
        render_template(body=body, subject=subject, is_html=True, context=CONTEXT)
        timings.append(time.perf_counter() - started)
    timings.sort()
    assert timings[int(len(timings) * 0.95)] < 0.002


# -- validation on save ---------------------------------------------------------------------------


def test_syntax_error_reports_line_and_message() -> None:
    """A template that does not parse: 422 with the line and Jinja's message."""
    details = invalid("Hello\n{{ customer.name }}\n{% if ticket.number %}open")
    assert details["field"] == "body"
    assert details["problem"] == "syntax"
    assert details["line"] == 3
    assert "endif" in details["message"]


def test_unknown_variable_lists_the_known_ones() -> None:
    """A typo in a variable is caught on save, with its line and the list to choose from."""
    details = invalid("Hi\n\n{{ customer.nmae }}")
    assert details["problem"] == "unknown_variable"
    assert details["line"] == 3
    assert "customer.nmae" in details["message"]
    assert details["known_variables"] == known_variables()


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ("{{ request }}", "request"),
        ("{{ config }}", "config"),
        ("{{ greeting.upper }}", "greeting.upper"),
        ("{{ customer }}", "customer"),
        ("{{ loop.index }}", "loop"),
        ("{% if customer.vip %}x{% endif %}", "customer.vip"),
    ],
)
def test_unknown_variables_are_refused(body: str, name: str) -> None:
    """Names outside the known list, a group printed whole, `loop` outside a loop: refused."""
    details = invalid(body)
    assert details["problem"] == "unknown_variable"
    assert name in details["message"]


def test_unknown_variable_in_a_stored_template_renders_empty_with_warning() -> None:
    """Rendering is lenient where saving is strict: an old template still renders."""
    result = render("a{{ request }}b")
    assert result.body == "ab"
    assert result.warnings == ["'request' is undefined"]


def test_template_over_the_size_limit_is_refused_and_not_rendered() -> None:
    """Body and subject each have the size limit; the error names the field."""
    big = "x" * (MAX_TEMPLATE_CHARS + 1)
    assert invalid(big)["problem"] == "too_large"
    details = invalid("ok", subject=big)
    assert (details["problem"], details["field"]) == ("too_large", "subject")
    validate_template(body="x" * MAX_TEMPLATE_CHARS, subject=None, is_html=False)
    result = render(big)
    assert result.body == ""
    assert "not rendered" in result.warnings[0]


def test_subject_is_validated_too() -> None:
    """A broken subject is reported as the subject's problem."""
    details = invalid("fine", subject="Re: {{ ticket.number ")
    assert (details["field"], details["problem"]) == ("subject", "syntax")


@pytest.mark.parametrize("name", sorted(set(DEFAULT_FILTERS) - ALLOWED_FILTERS))
def test_filters_outside_the_allow_list_are_unsafe(name: str) -> None:
    """Every Jinja filter not on the allow-list (attr, format, safe, map …) is refused."""
    details = invalid("{{ customer.name|" + name + " }}")
    assert details["problem"] == "unsafe"
    assert repr(name) in details["message"]


def test_unknown_filter_is_a_syntax_problem() -> None:
    """A filter Jinja does not have at all reads as a typo, with the allowed ones listed."""
    details = invalid("{{ customer.name|uper }}")
    assert details["problem"] == "syntax"
    assert "upper" in details["message"]


# -- sandbox escapes ------------------------------------------------------------------------------

# (payload, problem on save). Each must also render inert through both layers.
ESCAPES = [
    ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    ("{{ ().__class__.__base__.__subclasses__()[40]('/etc/passwd').read() }}", "unsafe"),
    ("{{ ()|attr('__class__') }}", "unsafe"),
    ("{{ customer|attr('__class__')|attr('__init__') }}", "unsafe"),
    ("{{ '{0.__class__}'|format(x) }}", "unsafe"),
    ('{{ "%s"|format(customer.name) }}', "unsafe"),
    ("{{ '{0.__class__.__init__.__globals__}'.format(customer) }}", "unsafe"),
    ("{{ cycler.__init__.__globals__ }}", "unsafe"),
    ("{{ cycler.__init__.__globals__.os.popen('id').read() }}", "unsafe"),
    ("{{ self._TemplateReference__context }}", "unsafe"),
    ("{{ self.__init__.__globals__ }}", "unsafe"),
    ("{{ lipsum.__globals__ }}", "unsafe"),
    ("{{ lipsum.__globals__['os'].environ }}", "unsafe"),
    ("{{ joiner.__init__.__globals__ }}", "unsafe"),
    ("{{ namespace.__init__ }}", "unsafe"),
    ("{{ range(10**9)|list }}", "unsafe"),
    ("{{ dict(a=1) }}", "unsafe"),
    (
        "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
        "unsafe",
    ),
    ("{{ customer['__class__'] }}", "unsafe"),
    ("{{ customer[ticket.subject] }}", "unsafe"),
    ("{% include 'other' %}", "unsafe"),
    ("{% import 'macros' as m %}", "unsafe"),
    ("{% extends 'base' %}", "unsafe"),
    ("{% autoescape false %}{{ customer.name }}{% endautoescape %}", "unsafe"),
    ("{{ customer.name|safe }}", "unsafe"),
    ("{{ customer.name.upper() }}", "unsafe"),
    ("{% set c = customer %}{{ c.email }}", "unsafe"),
    ("{{ request }}", "unknown_variable"),
    ("{{ config }}", "unknown_variable"),
    ("{{ config.items() }}", "unsafe"),
]


@pytest.mark.parametrize(("payload", "problem"), ESCAPES)
def test_escape_payload_is_refused_on_save(payload: str, problem: str) -> None:
    """The static policy refuses the payload for the body, in HTML too, and for the subject."""
    assert invalid(payload)["problem"] == problem
    assert invalid(payload, is_html=True)["problem"] == problem
    assert invalid("ok", subject=payload)["problem"] == problem


@pytest.mark.parametrize(("payload", "problem"), ESCAPES)
def test_escape_payload_renders_inert(payload: str, problem: str) -> None:
    """Rendered anyway (a stored template, or the runtime layer alone), nothing leaks, fast."""
    started = time.perf_counter()
    result = render(payload)
    html = render(payload, is_html=True)
    raw = _render_without_policy(payload, is_html=False, context=CONTEXT)
    raw_html = _render_without_policy(payload, is_html=True, context=CONTEXT)
    assert time.perf_counter() - started < 0.5
    assert result.body == html.body == ""
    assert result.warnings
    for text in (raw.body, raw_html.body):
        assert_no_leak(text)
        assert len(text) < 100


def test_runtime_layer_keeps_html_escaped_even_with_autoescape_false() -> None:
    """`{% autoescape false %}` is dropped before compiling: the runtime still escapes."""
    ctx = context_with(customer={"name": "<script>x</script>"})
    raw = _render_without_policy(
        "{% autoescape false %}{{ customer.name }}{% endautoescape %}", is_html=True, context=ctx
    )
    assert raw.body == "&lt;script&gt;x&lt;/script&gt;"


def test_runtime_layer_refuses_attribute_access_outside_variables() -> None:
    """Only variable groups and loop attributes resolve; str methods, format, mro do not."""
    for payload in (
        "{{ customer.name.upper() }}",
        "{{ ''.join(['a', 'b']) }}",
        "{{ 'x'.format }}",
        "{{ customer.email.split('@') }}",
    ):
        raw = _render_without_policy(payload, is_html=False, context=CONTEXT)
        assert raw.body == "", payload
        assert raw.warnings, payload


# -- resource limits -------------------------------------------------------------------------------

# Each renders quickly with a warning instead of exhausting memory or CPU. They pass the static
# policy (only known variables, allowed filters): the runtime limits are what stops them.
BOMBS = [
    ("{{ 'a' * 10**9 }}", "too large"),
    ("{{ (customer.name|list) * 10**8 }}", "too large"),
    ("{{ 9 ** 9 ** 9 }}", "too large"),
    ("{{ '%999999999s' % customer.name }}", "not allowed"),
    ("{{ agent.signature|replace('', agent.signature) }}", "too large"),
    ("{{ agent.signature|list|join(agent.signature) }}", "too large"),
    ("{% set s = agent.signature %}" + "{% set s = s ~ s %}" * 40 + "{{ s }}", "too large"),
    (
        "{% set s = agent.signature %}" + "{% set s %}{{ s }}{{ s }}{% endset %}" * 40 + "{{ s }}",
        "too large",
    ),
    (
        "{% set s = agent.signature %}{% set l = [" + ", ".join(["s"] * 200) + "] %}"
        "{% set m = [" + ", ".join(["l"] * 200) + "] %}{{ m }}",
        "too large",
    ),
    (
        "{% macro twice(n) %}{{ caller() }}{{ caller() }}{% endmacro %}"
        "{% call twice(1) %}{% call twice(1) %}{% call twice(1) %}{{ agent.signature }}"
        "{% endcall %}{% endcall %}{% endcall %}",
        "too large",
    ),
    # Python's recursion limit, or on a slow (loaded) machine the time limit first: either way
    # stopped, with a warning saying which.
    ("{% macro m(x) %}{{ m(x) }}{% endmacro %}{{ m(1) }}", "RecursionError|stopped after"),
]


@pytest.mark.parametrize(("payload", "warning"), BOMBS)
def test_resource_bombs_are_stopped(payload: str, warning: str) -> None:
    """Huge strings, numbers, lists and captured blocks are refused before they are built."""
    validate_template(body=payload, subject=None, is_html=False)
    ctx = context_with(agent={"signature": "s" * 30_000})
    for is_html in (False, True):
        started = time.perf_counter()
        result = render(payload, is_html=is_html, context=ctx)
        assert time.perf_counter() - started < 0.5
        assert len(result.body) <= MAX_OUTPUT_CHARS
        reasons = warning.split("|")
        assert any(r in w for w in result.warnings for r in reasons), result.warnings
        raw = _render_without_policy(payload, is_html=is_html, context=ctx)
        assert len(raw.body) <= MAX_OUTPUT_CHARS
        assert any(r in w for w in raw.warnings for r in reasons), raw.warnings


def test_slow_loops_stop_at_the_time_limit() -> None:
    """Nested loops that print nothing are still stopped: each loop body checks the deadline."""
    ctx = context_with(agent={"signature": "s" * 5_000})
    body = (
        "before {% for a in agent.signature %}{% for b in agent.signature %}"
        "{% for c in agent.signature %}{% endfor %}{% endfor %}{% endfor %}after"
    )
    started = time.perf_counter()
    result = render(body, context=ctx)
    elapsed = time.perf_counter() - started
    assert RENDER_TIME_LIMIT_SECONDS <= elapsed < 1.0
    assert result.body == "before "
    assert result.warnings == [
        f"rendering stopped after {RENDER_TIME_LIMIT_SECONDS} s: output is incomplete"
    ]


def test_long_output_is_truncated_at_the_limit() -> None:
    """Output beyond MAX_OUTPUT_CHARS is cut exactly there, with a warning."""
    ctx = context_with(agent={"signature": "s" * 1_000})
    body = "{% for a in agent.signature %}{{ agent.signature }}{% endfor %}"
    result = render(body, context=ctx)
    assert result.body == "s" * MAX_OUTPUT_CHARS
    assert result.warnings == [f"output truncated at {MAX_OUTPUT_CHARS} characters"]


def test_an_expression_failing_at_render_time_is_empty_and_the_rest_renders() -> None:
    """Division by zero or a wrong type in one expression blanks that expression only."""
    result = render("a{{ ticket.number / 0 }}b{{ customer.name + 1 }}c")
    assert result.body == "abc"
    assert len(result.warnings) == 2
    assert "division by zero" in result.warnings[0]


def test_a_failure_outside_the_hooks_empties_the_field_and_names_the_line() -> None:
    """What cannot be blanked in place (a comparison of a number with text) empties the body,
    rather than sending half a message, and never raises."""
    result = render_template(
        body="Hello\n{% if ticket.number < 'x' %}yes{% endif %}",
        subject="Re: {{ ticket.subject }}",
        is_html=False,
        context=CONTEXT,
    )
    assert result.body == ""
    assert result.subject == "Re: Не проходит оплата"
    assert len(result.warnings) == 1
    assert "line 2" in result.warnings[0]
    assert "TypeError" in result.warnings[0]


@pytest.mark.parametrize(
    "body",
    [
        "{{ " + "(" * 200 + "1" + ")" * 200 + " }}",
        "{{ " + "[" * 3000 + "]" * 3000 + " }}",
        "{{ 1" + " + 1" * 4000 + " }}",
        "{% if 1 %}" * 100 + "x" + "{% endif %}" * 100,
        "{% for a in customer.name %}" * 60 + "x" + "{% endfor %}" * 60,
    ],
)
def test_deeply_nested_template_is_a_syntax_problem_not_a_crash(body: str) -> None:
    """Nesting that overflows Jinja's parser or Python's compiler is a 422 on save and an empty
    render with a warning, never a RecursionError (a 500)."""
    details = invalid(body)
    assert details["problem"] == "syntax"
    assert "nested too deeply" in details["message"]
    result = render(body)
    assert result.body == ""
    assert "nested too deeply" in result.warnings[0]
    raw = _render_without_policy(body, is_html=False, context=CONTEXT)
    assert raw.body == ""
    assert "nested too deeply" in raw.warnings[0]
