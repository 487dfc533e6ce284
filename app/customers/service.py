"""Customers are found or created by e-mail address, case-insensitively."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.customers.models import Customer
from app.db.base import utcnow
from app.emails import normalize_email
from app.errors import NotFound
from app.timezones import check_timezone


def upsert_customer(
    session: Session,
    *,
    email: str,
    name: str | None = None,
    segment: str | None = None,
    timezone: str | None = None,
    strict: bool = True,
) -> tuple[Customer, bool]:
    """Return the customer with this address, creating it if needed, and whether it was created.

    ``INSERT … ON CONFLICT DO NOTHING`` then ``SELECT``: two sync workers meeting the same new
    customer at once both end up with the one row instead of one of them failing.
    ``strict=False`` (mail that arrived) keeps any sender's address, only lower-cased: refusing an
    odd but real address would lose the customer's request.
    """
    address = normalize_email(email) if strict else email.strip().lower()
    if timezone is not None:
        check_timezone(timezone)
    now = utcnow()
    values = {
        "email": address,
        "name": name,
        "segment": segment or "regular",
        "timezone": timezone,
        "created_at": now,
        "updated_at": now,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = (
        insert(Customer)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(Customer.id)
    )
    # RETURNING, not rowcount: psycopg reports -1 rows for INSERT … ON CONFLICT.
    created = session.execute(stmt).scalar_one_or_none() is not None
    customer = session.execute(select(Customer).where(Customer.email == address)).scalar_one()
    if not created:
        # A later, better-informed sighting fills in what we did not know; it never blanks data.
        if name and customer.name != name:
            customer.name = name
        if segment and customer.segment != segment:
            customer.segment = segment
        if timezone and customer.timezone != timezone:
            customer.timezone = timezone
        session.flush()
    return customer, created


def upsert_senders(
    session: Session, senders: Sequence[tuple[str, str | None]]
) -> dict[str, Customer]:
    """The customers for these (address, display name) pairs of arrived mail, created where
    missing: one multi-row ``INSERT … ON CONFLICT DO NOTHING`` and one ``SELECT`` for a whole
    sync chunk. Addresses are kept as they came, lower-cased (see ``upsert_customer``); a later
    pair's name wins, and a name is never blanked."""
    names: dict[str, str | None] = {}
    for email, name in senders:
        address = email.strip().lower()
        names[address] = name or names.get(address)
    if not names:
        return {}
    now = utcnow()
    rows = [
        {"email": address, "name": name, "segment": "regular", "created_at": now, "updated_at": now}
        for address, name in names.items()
    ]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(Customer).values(rows).on_conflict_do_nothing(index_elements=["email"]))
    found = session.execute(select(Customer).where(Customer.email.in_(list(names)))).scalars()
    customers = {customer.email: customer for customer in found}
    for address, name in names.items():
        if name and customers[address].name != name:
            customers[address].name = name
    return customers


def get_customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"customer {customer_id} not found", code="customer_not_found")
    return customer


def get_customer_by_email(session: Session, email: str) -> Customer | None:
    return session.execute(
        select(Customer).where(Customer.email == normalize_email(email))
    ).scalar_one_or_none()


def list_customers(
    session: Session,
    *,
    q: str | None = None,
    segment: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Customer], int]:
    stmt = select(Customer)
    if q:
        # As in the ticket list: `%`/`_` typed by a user are literal, not wildcards.
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(
            or_(
                Customer.email.like(pattern, escape="\\"),
                func.lower(Customer.name).like(pattern, escape="\\"),
            )
        )
    if segment:
        stmt = stmt.where(Customer.segment == segment)
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(stmt.order_by(Customer.id).limit(limit).offset(offset)).scalars()
    return list(rows), total


def update_customer(
    session: Session,
    *,
    customer_id: int,
    name: str | None = None,
    segment: str | None = None,
    timezone: str | None = None,
) -> Customer:
    customer = get_customer(session, customer_id)
    if name is not None:
        customer.name = name
    if segment is not None:
        customer.segment = segment
    if timezone is not None:
        customer.timezone = check_timezone(timezone)
    session.flush()
    return customer
