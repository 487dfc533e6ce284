"""Timing ``GET /api/v1/tickets`` over HTTP: the agent's queue and the other common lists.

Two clocks per request. The server's own figure (``server-timing: app;dur=X``, taken by
``app.api.timing`` around the whole ASGI app: auth, SQL, serialisation) is what the budget is
about, because it excludes the network and this client. The client's round trip shows what a
caller on the same host sees on top (HTTP parsing, JSON decoding). Requests are sequential over
one keep-alive connection: the budget is the latency of one request, not throughput under load.
"""

from __future__ import annotations

import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

SERVER_TIMING = re.compile(r"\bapp;dur=([0-9.]+)")
LIST_PATH = "/api/v1/tickets"


@dataclass(frozen=True)
class Scenario:
    """One list query as a client sends it, and a check that its answer is plausible.

    The check guards the figures: a filter that silently matched nothing would be fast and wrong.
    """

    name: str
    params: dict[str, str]
    check: Callable[[dict[str, Any]], str | None] = lambda _page: None


@dataclass
class Timings:
    """The measurements of one scenario, in milliseconds."""

    scenario: Scenario
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    total: int | None = None
    items: int | None = None


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), so p50 is the median."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    return cuts[round(pct * 10) - 1] if pct < 100 else max(values)


def measure(client: httpx.Client, scenario: Scenario, *, requests: int, warmup: int) -> Timings:
    """Send ``warmup`` unrecorded requests, then ``requests`` recorded ones, one at a time.

    Warm-up fills the connection pool, SQLAlchemy's statement cache, PostgreSQL's buffers and
    the plan of each statement; without it the first requests measure start-up, not steady state.
    """
    result = Timings(scenario)
    for index in range(warmup + requests):
        started = time.perf_counter()
        response = client.get(LIST_PATH, params=scenario.params)
        elapsed_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(
                f"{scenario.name}: HTTP {response.status_code}: {response.text[:500]}"
            )
        if index == 0:
            page = response.json()
            problem = scenario.check(page)
            if problem:
                raise RuntimeError(f"{scenario.name}: implausible answer: {problem}")
            result.total, result.items = page["total"], len(page["items"])
        if index < warmup:
            continue
        match = SERVER_TIMING.search(response.headers.get("server-timing", ""))
        if match is None:
            raise RuntimeError(f"{scenario.name}: no `server-timing: app;dur=` header")
        result.server_ms.append(float(match.group(1)))
        result.client_ms.append(elapsed_ms)
    return result


def query_string(params: dict[str, str]) -> str:
    return "&".join(f"{key}={value}" for key, value in params.items()) or "(none)"


def print_table(results: list[Timings]) -> None:
    """One row per scenario: matches, then p50/p95/p99/max at the server and at the client."""
    header = (
        f"{'query':<38} {'n':>4} {'total':>7} {'items':>5} | "
        f"{'server p50':>10} {'p95':>6} {'p99':>6} {'max':>6} | "
        f"{'client p50':>10} {'p95':>6} {'p99':>6} {'max':>6}"
    )
    out = sys.stdout
    out.write(header + "\n" + "-" * len(header) + "\n")
    for timing in results:
        server, client = timing.server_ms, timing.client_ms
        out.write(
            f"{query_string(timing.scenario.params):<38.38} {len(server):>4} "
            f"{timing.total if timing.total is not None else '-':>7} "
            f"{timing.items if timing.items is not None else '-':>5} | "
            f"{percentile(server, 50):>10.2f} {percentile(server, 95):>6.2f} "
            f"{percentile(server, 99):>6.2f} {max(server):>6.2f} | "
            f"{percentile(client, 50):>10.2f} {percentile(client, 95):>6.2f} "
            f"{percentile(client, 99):>6.2f} {max(client):>6.2f}\n"
        )
    out.write("(times in ms; total = tickets matched, items = tickets on the page)\n")
    out.flush()


def _all(field_name: str, expected: Callable[[Any], bool], what: str) -> Callable[..., str | None]:
    def check(page: dict[str, Any]) -> str | None:
        if not page["items"]:
            return "no tickets matched (with --reuse, pick a --caller who has some)"
        wrong = [item["number"] for item in page["items"] if not expected(item[field_name])]
        return f"tickets {wrong[:5]} are not {what}" if wrong else None

    return check


def scenarios(*, caller_email: str, tag: str, word: str, number: int) -> list[Scenario]:
    """The main query first, then the other lists agents and the add-on open most."""
    return [
        Scenario(
            "my open tickets",
            {"status": "open", "assignee": "me"},
            _both(
                _newest_first,
                _all("status", lambda s: s == "open", "open"),
                _all(
                    "assignee",
                    lambda a: a is not None and a["email"] == caller_email,
                    f"assigned to {caller_email}",
                ),
            ),
        ),
        Scenario(
            "unassigned new tickets",
            {"assignee": "none", "status": "new"},
            _both(
                _all("status", lambda s: s == "new", "new"),
                _all("assignee", lambda a: a is None, "unassigned"),
            ),
        ),
        Scenario("by tag", {"tag": tag}, _all("tags", lambda tags: tag in tags, f"tagged {tag}")),
        Scenario(
            "subject search",
            {"q": word},
            _all("subject", lambda subject: word in subject.lower(), f"about {word!r}"),
        ),
        Scenario("recently updated", {"sort": "-updated_at"}, _all("id", lambda _: True, "")),
        Scenario(
            "by number",
            {"number": str(number)},
            _all("number", lambda n: n == number, f"#{number}"),
        ),
    ]


def _newest_first(page: dict[str, Any]) -> str | None:
    numbers = [item["number"] for item in page["items"]]
    return None if numbers == sorted(numbers, reverse=True) else "not sorted newest first"


def _both(*checks: Callable[[dict[str, Any]], str | None]) -> Callable[..., str | None]:
    def check(page: dict[str, Any]) -> str | None:
        for one in checks:
            problem = one(page)
            if problem:
                return problem
        return None

    return check
