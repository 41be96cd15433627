"""check-config resolves the follow-ups against the organisation (here the emulator's, as
`make run` uses it) and reports every problem with its key path; `lead-intake map` shows what
the follow-ups would send, for a new lead and for a match to a lead given as a file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from aiohttp.test_utils import TestServer

from close_emulator.objects import create_lead
from tests.conftest import API_KEY, ROOT, emulator_state
from tests.team import followup_source, use_team, user_id
from tests.test_cli import run_cli

SOURCE = {
    "kind": "webhook",
    "extract": {
        "email": "body.email",
        "full_name": "body.name",
        "company": "body.company",
        "message": "body.message",
        "extra.plan": "body.plan",
        "attribution.page_url": "body.page",
    },
    "lead": {"custom": {"Plan": "extra.plan"}},
    "followup": {
        "owner": {
            "field": "Lead Owner",
            "pool": "sales",
            "pools": {"sales": {"group": "Sales Team"}},
            "default": "dev@example.com",
            "on_match": "fill",
        },
        "task": {"text": "Call ${full_name}: ${message}", "due_in": "1h"},
        "sequence": {"name": "Website nurture"},
        "update": {"fields": {"Plan": "overwrite", "name": "overwrite"}},
        "opportunity": {
            "pipeline": "Sales",
            "status": "Demo requested",
            "value": "`250.5`",
            "value_period": "monthly",
            "note": "From ${attribution.page_url}",
            "on_match": True,
        },
        "activity": {
            "type": "Web Form Submission",
            "fields": {"Source": "source", "Page": "attribution.page_url", "Plan": "extra.plan"},
            "marker_field": "Submission ID",
            "on_match": True,
        },
    },
}


def write(tmp_path: Path, source: dict) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": {"web": source}}))
    return path


async def test_check_config_resolves_the_follow_ups(tmp_path: Path) -> None:
    code, out, err = await run_cli("check-config", str(write(tmp_path, SOURCE)))
    assert code == 0, err
    assert "the follow-ups of web resolved too" in out


async def test_check_config_names_every_follow_up_problem_and_a_missing_required_field(
    tmp_path: Path,
) -> None:
    broken = json.loads(json.dumps(SOURCE))
    followup = broken["followup"]
    followup["owner"]["pools"]["sales"] = {"users": ["ghost@example.com", "sam@example.com"]}
    followup["task"]["assign_to"] = "former@example.com"
    followup["sequence"]["name"] = "Nurture v2"
    followup["opportunity"]["status"] = "Closed"
    followup["activity"]["fields"] = {"Page": "attribution.page_url"}
    followup["activity"]["marker_field"] = "Plan"
    code, _, err = await run_cli("check-config", str(write(tmp_path, broken)))
    assert code == 2
    prefix = "sources.web.followup"
    for path, text in (
        ("owner.pools.sales.users[0]", "no user 'ghost@example.com'"),
        ("task.assign_to", "'former@example.com' is deactivated"),
        ("sequence.name", "no sequence 'Nurture v2'"),
        ("opportunity.status", "no status 'Closed' in pipeline 'Sales'"),
        ("activity.fields", "requires the field 'Source'"),
        ("activity.marker_field", "'Plan' is a choices field; the submission id needs a text"),
    ):
        assert f"{prefix}.{path}: " in err and text in err, (path, err)
    assert "6 problem(s)" in err


async def test_check_config_refuses_a_marker_field_the_activity_type_lacks(
    tmp_path: Path,
) -> None:
    broken = json.loads(json.dumps(SOURCE))
    broken["followup"]["activity"]["marker_field"] = "Intake ID"
    code, _, err = await run_cli("check-config", str(write(tmp_path, broken)))
    assert code == 2
    assert "sources.web.followup.activity.marker_field: " in err
    assert "'Web Form Submission' has no field 'Intake ID' (text: 'Source'" in err
    assert "1 problem(s)" in err


async def test_map_shows_the_follow_ups_for_a_new_lead_and_for_a_match(tmp_path: Path) -> None:
    sources = write(tmp_path, SOURCE)
    payload = tmp_path / "payload.json"
    payload.write_text(
        json.dumps(
            {
                "email": "kim@buyer.example",
                "name": "Kim Buyer",
                "company": "Kim New Co",
                "message": "demo please",
                "plan": "Pro",
                "page": "https://example.com/pricing",
            }
        )
    )
    env = {"INTAKE_SOURCES_FILE": str(sources)}
    code, out, err = await run_cli("map", "--source", "web", str(payload), env=env)
    assert code == 0, err
    new = json.loads(out)["followups"]
    assert new["as"] == "a new lead"
    assert new["owner"]["pool"] == "sales" and new["owner"]["in_turn"][0].startswith("sam@")
    assert new["task"]["text"] == "Call Kim Buyer: demo please"
    assert new["task"]["assigned_to"] == "<owner>"
    assert new["opportunity"]["value"] == 25050 and new["opportunity"]["value_period"] == "monthly"
    assert new["opportunity"]["note"] == "From https://example.com/pricing"
    org = yaml.safe_load((ROOT / "config" / "emulator-org.yaml").read_text())
    plan_id = next(f["id"] for f in org["custom_fields"]["lead"] if f["name"] == "Plan")
    lead = {
        "id": "lead_existing",
        "name": "Kim Old Co",
        "status_id": "stat_x",
        f"custom.{plan_id}": "Team",
        "contacts": [
            {"id": "cont_kim", "emails": [{"email": "kim@buyer.example", "type": "office"}]}
        ],
    }
    lead_file = tmp_path / "lead.json"
    lead_file.write_text(json.dumps(lead))
    code, out, err = await run_cli(
        "map", "--source", "web", "--lead-file", str(lead_file), str(payload), env=env
    )
    assert code == 0, err
    match = json.loads(out)["followups"]
    assert match["as"] == "a match to lead_existing"
    put = match["update"]["put"]
    assert put["name"] == "Kim New Co" and put[f"custom.{plan_id}"] == "Pro"
    owner_key = next(k for k in put if k not in ("name", f"custom.{plan_id}", "description"))
    assert put[owner_key] == "<owner>"  # on_match: fill, and the lead has no owner
    assert match["update"]["changes"]["name"] == {"before": "Kim Old Co", "after": "Kim New Co"}
    assert match["opportunity"]["lead_id"] == "lead_existing"
    assert match["opportunity"]["contact_id"] == "cont_kim"
    assert match["activity"]["lead_id"] == "lead_existing"
    types = {t["name"]: t for t in org["custom_activity_types"]}
    assert "Submission ID" in [f["name"] for f in types["Web Form Submission"]["fields"]]
    marker_keys = [k for k, v in match["activity"].items() if str(v).startswith("sub_")]
    assert len(marker_keys) == 1 and marker_keys[0].startswith("custom.cf_")
    assert "task" not in match and "sequence" not in match  # on a match they do not run
    code, _, err = await run_cli(
        "map", "--source", "web", "--lead", "lead_x", str(payload), env=env
    )
    assert code == 2 and "--lead" in err and "INTAKE_CLOSE_API_KEY" in err


async def test_map_reads_the_existing_lead_from_close_with_the_key(
    tmp_path: Path, emulator: TestServer
) -> None:
    state = emulator_state(emulator)
    use_team(state)
    source = followup_source()
    source["followup"]["update"] = {"fields": {"name": "overwrite"}}
    source["followup"]["owner"]["on_match"] = "keep"
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": {"web": source}}))
    owner_key = "custom." + next(
        f.id for f in state.options.lead_custom_fields if f.name == "Lead Owner"
    )
    rep = user_id(state, "rep3@team.example")
    lead = create_lead(
        {
            "name": "Old Name",
            owner_key: rep,
            "contacts": [{"name": "Lu", "emails": [{"email": "lu@buyer.example"}]}],
        },
        state,
    )
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"email": "lu@buyer.example", "company": "New Name"}))
    env = {
        "INTAKE_SOURCES_FILE": str(path),
        "INTAKE_CLOSE_API_KEY": API_KEY,
        "INTAKE_CLOSE_BASE_URL": str(emulator.make_url("/api/v1")),
    }
    code, out, err = await run_cli(
        "map", "--source", "web", "--lead", lead["id"], str(payload), env=env
    )
    assert code == 0, err
    shown = json.loads(out)["followups"]
    assert shown["owner"] == {"kept": f"rep3@team.example ({rep})"}
    assert shown["update"]["put"] == {"name": "New Name"}
    assert not [r for r in state.requests if r.method != "GET"]  # the preview sends nothing
