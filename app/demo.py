"""Demo data for ``inboxdesk demo``: an admin, a mailbox and a few tickets, created once."""

from __future__ import annotations

from sqlalchemy import func, select

from app.agents import service as agents
from app.agents.models import Role
from app.db.session import get_database
from app.mailboxes import service as mailboxes
from app.tickets import service as tickets
from app.tickets.events import Actor
from app.tickets.models import Priority, Ticket

DEMO_MAILBOX = "support@demo.inboxdesk.test"

_DEMO_TICKETS = [
    ("anna.petrova@example.ru", "Анна Петрова", "Не проходит оплата картой", Priority.URGENT),
    ("john.smith@example.com", "John Smith", "How do I export my invoices?", Priority.NORMAL),
    ("li.wei@example.cn", "Li Wei", "Password reset e-mail never arrives", Priority.HIGH),
    ("maria.garcia@example.es", "María García", "Feature request: dark mode", Priority.LOW),
]


def prepare_demo(*, admin_email: str) -> str:
    """Create the demo data on first run and return a fresh API token for the demo admin.

    Tokens are stored hashed and cannot be shown again, so each run issues a new one.
    """
    with get_database().unit_of_work() as session:
        admin = agents.find_agent(session, admin_email) or agents.create_agent(
            session, email=admin_email, name="Demo Admin", role=Role.ADMIN
        )
        _, token = agents.issue_token(session, agent=admin, name="demo")
        mailbox = mailboxes.find_mailbox(session, DEMO_MAILBOX) or mailboxes.create_mailbox(
            session, email=DEMO_MAILBOX, name="Demo Support"
        )
        if session.execute(select(func.count(Ticket.id))).scalar_one() == 0:
            for email, name, subject, priority in _DEMO_TICKETS:
                tickets.create_ticket(
                    session,
                    mailbox=mailbox,
                    customer_email=email,
                    customer_name=name,
                    subject=subject,
                    priority=priority,
                    actor=Actor.system(),
                )
    return token
