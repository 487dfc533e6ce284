from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.api.deps import CurrentAgent, RowId, SessionDep
from app.api.validation import NO_NUL
from app.customers import service
from app.customers.schemas import CustomerPage, CustomerRead, CustomerUpdate, CustomerUpsert

router = APIRouter(prefix="/api/v1/customers", tags=["customers"])


@router.get("", response_model=CustomerPage)
def list_customers(
    session: SessionDep,
    _agent: CurrentAgent,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=NO_NUL, description="text in address or name"),
    ] = None,
    segment: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> CustomerPage:
    items, total = service.list_customers(session, q=q, segment=segment, limit=limit, offset=offset)
    return CustomerPage(
        items=[CustomerRead.model_validate(c) for c in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.post(
    "",
    response_model=CustomerRead,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"description": "the customer already existed (matched case-insensitively)"}},
)
def upsert_customer(
    body: CustomerUpsert, response: Response, session: SessionDep, _agent: CurrentAgent
) -> CustomerRead:
    customer, created = service.upsert_customer(
        session, email=body.email, name=body.name, segment=body.segment, timezone=body.timezone
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return CustomerRead.model_validate(customer)


@router.get("/{customer_id}", response_model=CustomerRead)
def get_customer(customer_id: RowId, session: SessionDep, _agent: CurrentAgent) -> CustomerRead:
    return CustomerRead.model_validate(service.get_customer(session, customer_id))


@router.patch("/{customer_id}", response_model=CustomerRead)
def update_customer(
    customer_id: RowId, body: CustomerUpdate, session: SessionDep, _agent: CurrentAgent
) -> CustomerRead:
    customer = service.update_customer(
        session,
        customer_id=customer_id,
        name=body.name,
        segment=body.segment,
        timezone=body.timezone,
    )
    return CustomerRead.model_validate(customer)
