"""The emulated organisation from a file: users, statuses, custom fields, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from close_emulator import OrgFileError, create_emulator_app, load_org, options_with_org
from tests.conftest import ROOT

ORG = """
organization: {name: Acme}
users:
  - {email: gone@acme.example, name: Gone Person, active: false}
  - {email: ann@acme.example, name: Ann Lee}
lead_statuses: [New, {id: stat_fixed, label: Won}]
custom_fields:
  lead:
    - {name: Plan, type: choices, choices: [Pro, Team]}
  contact:
    - {id: cf_linkedin, name: LinkedIn}
"""


def test_the_shipped_file_is_valid_and_has_the_readme_fields() -> None:
    options = options_with_org(ROOT / "config" / "emulator-org.yaml")
    names = {field.name: field.id for field in options.lead_custom_fields}
    assert names["UTM Campaign"] == "cf_a4xW1ql2T7qMJ3LTeYvJ"
    assert names["Plan"] == "cf_Tp9kq3nWm7YcR2ZxVb8L"
    assert options.lead_statuses[0].label == "Potential"
    assert options.user_name == "Dev Owner"


def test_every_problem_of_a_file_is_named_with_its_key(tmp_path: Path) -> None:
    bad = tmp_path / "org.yaml"
    bad.write_text(
        "users: [{email: nobody}]\n"
        "custom_fields:\n  lead: [{name: Plan, type: choice}]\n  opportunity: []\n"
        "territories: []\n"
    )
    with pytest.raises(OrgFileError) as caught:
        load_org(bad)
    paths = [path for path, _ in caught.value.problems]
    assert paths == [
        "users[0].email",
        "users[0].name",
        "custom_fields.lead[0].type",
        "custom_fields.opportunity",
        "territories",
    ]
    assert str(bad) in str(caught.value)


def test_duplicate_fields_and_unreadable_files_are_refused(tmp_path: Path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("custom_fields:\n  lead: [{name: Plan}, {name: Plan}]\n")
    with pytest.raises(OrgFileError, match="duplicate ids"):
        options_with_org(twice)
    with pytest.raises(OrgFileError, match="cannot read"):
        load_org(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("users: [\n")
    with pytest.raises(OrgFileError, match="not valid YAML"):
        load_org(broken)


async def test_the_api_serves_the_files_organisation(tmp_path: Path) -> None:
    path = tmp_path / "org.yaml"
    path.write_text(ORG)
    options = options_with_org(path, api_keys=["k"], app_url="http://127.0.0.1:9/")
    async with TestClient(TestServer(create_emulator_app(options))) as client:
        auth = {"Authorization": "Bearer k"}
        statuses = await (await client.get("/api/v1/status/lead/", headers=auth)).json()
        assert [s["label"] for s in statuses["data"]] == ["New", "Won"]
        assert statuses["data"][1]["id"] == "stat_fixed"
        schema = await (
            await client.get("/api/v1/custom_field_schema/contact/", headers=auth)
        ).json()
        assert [(f["id"], f["name"]) for f in schema["fields"]] == [("cf_linkedin", "LinkedIn")]
        me = await (await client.get("/api/v1/me/", headers=auth)).json()
        assert me["email"] == "ann@acme.example"  # the first active user owns the key
        org_id = me["organizations"][0]["id"]
        users = await (await client.get("/api/v1/user/", headers=auth)).json()
        assert [u["organizations"] for u in users["data"]] == [[], [org_id]]
        org = await (await client.get(f"/api/v1/organization/{org_id}/", headers=auth)).json()
        assert org["name"] == "Acme"
        assert [m["user_email"] for m in org["inactive_memberships"]] == ["gone@acme.example"]
        body = {
            "name": "Acme",
            "custom.Plan": "Pro",
            "contacts": [{"emails": [{"email": "a@b.co"}]}],
        }
        lead = await (await client.post("/api/v1/lead/", json=body, headers=auth)).json()
        assert lead["html_url"] == f"http://127.0.0.1:9/lead/{lead['id']}/"
        assert lead["created_by_name"] == "Ann Lee"
        page = await client.get(f"/lead/{lead['id']}/")
        text = await page.text()
        assert page.status == 200 and "<th>Plan</th><td>Pro</td>" in text and "a@b.co" in text
        assert (await client.get("/lead/lead_unknown/")).status == 404
        refused = await client.post(
            "/api/v1/lead/", json={"custom.Plan": "Enterprise"}, headers=auth
        )
        assert refused.status == 400
