from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Caller


def test_list_tickets_requires_a_token(client: TestClient) -> None:
    response = client.get("/api/v1/tickets")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_create_and_get_ticket(client: TestClient, admin: Caller, mailbox) -> None:  # type: ignore[no-untyped-def]
    created = client.post(
        "/api/v1/tickets",
        json={"mailbox": mailbox.email, "customer_email": "Bob@Example.com", "subject": "Help"},
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["customer"]["email"] == "bob@example.com"
    fetched = client.get(f"/api/v1/tickets/{body['id']}", headers=admin.headers)
    assert fetched.json()["number"] == body["number"]
