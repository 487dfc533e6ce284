"""One measured sync of a mailbox backlog, in a fresh child process: time and memory.

A fresh process per measurement so that its peak resident set (VmHWM) belongs to this
backlog alone, not to whatever the benchmark did before. The product's own parts do the work —
``MailboxSync`` over ``GmailClient.for_emulator`` — and are only timed from outside: the client's
``get_messages`` and the label push are wrapped to note when they ran, nothing is replaced.

The parent passes the database URL in the environment (not on the command line, so a password
stays out of ``ps``) and reads one JSON object from the child's stdout.

``python -m benchmarks.sync_pass --api-url URL --mailbox-id N``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

URL_VARIABLE = "INBOXDESK_BENCH_DATABASE_URL"


def _status_kb(field: str) -> int | None:
    """A ``VmXXX:`` line of /proc/self/status, in KiB (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kb() -> int:
    """This process's peak resident set so far, in KiB.

    VmHWM, not ``ru_maxrss``: Linux carries ru_maxrss over fork and execve, so a child started by
    a big parent (the ticket-list benchmark seeds 100,000 tickets first) would report the
    parent's peak. VmHWM belongs to the address space, which execve makes new.
    """
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def current_rss_kb() -> int:
    """The resident set now, in KiB (VmRSS); the peak where /proc is missing."""
    rss = _status_kb("VmRSS")
    return rss if rss is not None else peak_rss_kb()


@dataclass
class PassResult:
    fetched: int = 0
    tickets_created: int = 0
    duplicates: int = 0
    full_sync: bool = False
    # The pass: history.list, batched messages.get, parse, store — everything but the labels.
    ingest_seconds: float = 0.0
    # CPU time of this process over the same span (the rest is waiting: Gmail, the database).
    ingest_cpu_seconds: float = 0.0
    # The pass's label push: one threads.modify per new ticket, up to push_dirty's limit (the
    # rest go in the next passes, at the same pace).
    push_seconds: float = 0.0
    pushed: int = 0
    rss_start_kb: int = 0
    peak_rss_kb: int = 0
    # (messages fetched so far, peak RSS so far in KiB) after each chunk's messages.get batches.
    rss_curve: list[tuple[int, int]] = field(default_factory=list)


def _timed(func: Callable[..., Any], spent: list[float], cpu: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            return func(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)

    return wrapper


def measure(database_url: str, api_url: str, mailbox_id: int) -> PassResult:
    from app.db.session import Database
    from app.mailboxes.models import Mailbox
    from gmail_sync.client import GmailClient
    from gmail_sync.sync import MailboxSync
    from labels.taxonomy import Taxonomy

    result = PassResult()
    database = Database.from_url(database_url)
    with database.session() as session:
        address = session.get_one(Mailbox, mailbox_id).email
    client = GmailClient.for_emulator(address, api_url=api_url)
    sync = MailboxSync(database, mailbox_id, client, taxonomy=Taxonomy())

    fetched_so_far = 0
    get_messages = client.get_messages

    def get_and_note(ids: Any, **kwargs: Any) -> Any:
        nonlocal fetched_so_far
        found = get_messages(ids, **kwargs)
        fetched_so_far += sum(1 for m in found.values() if m is not None)
        result.rss_curve.append((fetched_so_far, peak_rss_kb()))
        return found

    client.get_messages = get_and_note  # type: ignore[method-assign]
    push_spent: list[float] = []
    push_cpu: list[float] = []
    sync.labels.push_dirty = _timed(  # type: ignore[method-assign]
        sync.labels.push_dirty, push_spent, push_cpu
    )

    result.rss_start_kb = current_rss_kb()
    started, cpu_started = time.perf_counter(), time.process_time()
    report = sync.run()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    result.fetched = report.fetched
    result.tickets_created = report.tickets_created
    result.duplicates = report.duplicates
    result.full_sync = report.full_sync
    result.push_seconds = sum(push_spent)
    result.pushed = report.labels_pushed
    result.ingest_seconds = elapsed - result.push_seconds
    result.ingest_cpu_seconds = cpu - sum(push_cpu)
    result.peak_rss_kb = peak_rss_kb()
    client.close()
    database.dispose()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync_pass")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--mailbox-id", type=int, required=True)
    args = parser.parse_args(argv)
    result = measure(os.environ[URL_VARIABLE], args.api_url, args.mailbox_id)
    sys.stdout.write(json.dumps(asdict(result)) + "\n")


if __name__ == "__main__":
    main()
