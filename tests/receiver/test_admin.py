"""GET /v1/submissions/{id}: the record, behind the admin bearer token."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import ADMIN_TOKEN

PROBLEM = "application/problem+json"


async def test_record_needs_a_valid_token(client: TestClient[Any, Any]) -> None:
    posted = await (await client.post("/hooks/partner", json={"a": 1})).json()
    url = f"/v1/submissions/{posted['id']}"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
    ):
        response = await client.get(url, headers=headers)
        assert response.status == 401
        assert response.content_type == PROBLEM
    response = await client.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status == 200
    record = await response.json()
    assert record["id"] == posted["id"]
    assert record["state"] == "queued"
    assert record["payload"] == {"a": 1}
    assert [event["state"] for event in record["history"]] == ["queued"]


async def test_unknown_submission_is_404(client: TestClient[Any, Any]) -> None:
    response = await client.get(
        "/v1/submissions/sub_nothing", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status == 404
    assert response.content_type == PROBLEM
