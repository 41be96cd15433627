"""Every preset maps its provider's documented example payload to the exact Close lead body."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from provider_emulator.state import bundled_fixtures
from service.config.presets import load_presets
from service.errors import ConfigError, MappingRejected
from service.mapping import Mapper, MappingSpec
from tests.mapping import envelope, payload

PRESETS = load_presets()

EXPECTED: dict[str, dict[str, Any]] = {
    "typeform": {
        "name": "Laura",
        "contacts": [
            {"name": "Laura", "emails": [{"email": "laura@example.com", "type": "office"}]}
        ],
    },
    "tally": {
        "name": "Acme SAS",
        "description": "We need a demo next week.",
        "contacts": [
            {
                "name": "Alice Martin",
                "emails": [{"email": "alice.martin@example.com", "type": "office"}],
                "phones": [{"phone": "+33612345678", "type": "office"}],
            }
        ],
    },
    # The documented phone 15550000000 is a fictional 555 number: dropped with a warning.
    "webflow": {
        "name": "Zaphod Beeblebrox",
        "contacts": [
            {
                "name": "Zaphod Beeblebrox",
                "emails": [{"email": "zaphod@heartofgold.ai", "type": "office"}],
            }
        ],
    },
    "calendly": {
        "name": "Acme Inc",
        "description": "We would like a demo for our sales team of 12.",
        "contacts": [
            {
                "name": "John Doe",
                "emails": [{"email": "test@example.com", "type": "office"}],
                "phones": [{"phone": "+14045551234", "type": "office"}],
            }
        ],
    },
    "calcom": {
        "name": "John Doe",
        "contacts": [
            {"name": "John Doe", "emails": [{"email": "john.doe@example.com", "type": "office"}]}
        ],
    },
    "unbounce": {
        "name": "Example Corp",
        "description": "Looking for a quote for 20 seats.",
        "contacts": [
            {
                "name": "John Doe",
                "emails": [{"email": "john@example.com", "type": "office"}],
                "phones": [{"phone": "+14155552671", "type": "office"}],
            }
        ],
    },
    "google-ads": {
        "name": "FirstName LastName",
        "contacts": [
            {
                "name": "FirstName LastName",
                "emails": [{"email": "test@example.com", "type": "office"}],
                "phones": [{"phone": "+16505550123", "type": "office"}],
            }
        ],
    },
    "jotform": {
        "name": "Doe Consulting",
        "description": "Please call me about pricing.",
        "contacts": [
            {
                "name": "John Doe",
                "emails": [{"email": "john.doe@example.com", "type": "office"}],
                "phones": [{"phone": "+14155552671", "type": "office"}],
            }
        ],
        "addresses": [
            {
                "label": "business",
                "address_1": "123 Market St",
                "address_2": "Suite 400",
                "city": "San Francisco",
                "state": "CA",
                "zipcode": "94103",
                "country": "US",
            }
        ],
    },
    "netlify": {
        "name": "Raymond Camden",
        "description": (
            "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Quisque sapien nunc, "
            "sagittis eget tincidunt in, convallis et erat. Nulla ult"
        ),
        "contacts": [
            {
                "name": "Raymond Camden",
                "emails": [{"email": "raymondcamden+dloct6a@gmail.com", "type": "office"}],
            }
        ],
    },
    "generic-form": {
        "name": "Smith & Sons Ltd",
        "description": "Hello,\nwe need a quote for 40 desks.",
        "contacts": [
            {
                "name": "Jane Smith",
                "emails": [{"email": "jane.smith@example.com", "type": "office"}],
                "phones": [{"phone": "+442079460958", "type": "office"}],
            }
        ],
    },
    # Thin presets: the documented notification, mapped with what the provider emulator's
    # fixture answers for its id (the Graph API lead, the CRM contact).
    "meta-lead-ads": {
        "name": "Smith Roofing",
        "contacts": [
            {
                "name": "Jordan Smith",
                "title": "Owner",
                "emails": [{"email": "jordan.smith@example.com", "type": "office"}],
                "phones": [{"phone": "+14155552671", "type": "office"}],
            }
        ],
        "addresses": [
            {
                "label": "business",
                "city": "Oakland",
                "state": "CA",
                "zipcode": "94607",
                "country": "US",
            }
        ],
    },
    "hubspot": {
        "name": "HubSpot",
        "url": "https://hubspot.com",
        "contacts": [
            {
                "name": "Brian Halligan",
                "title": "CEO",
                "emails": [{"email": "bh@hubspot.com", "type": "office"}],
                "phones": [{"phone": "+16175550134", "type": "office"}],
            }
        ],
        "addresses": [
            {
                "label": "business",
                "city": "Cambridge",
                "state": "MA",
                "zipcode": "02141",
                "country": "US",
            }
        ],
    },
    "generic-json": {
        "name": "Rossi Logistica S.r.l.",
        "url": "https://rossi-logistica.example.it",
        "description": "Partner referral: interested in the enterprise plan.",
        "contacts": [
            {
                "name": "Marco Rossi",
                "title": "Head of Operations",
                "emails": [{"email": "marco.rossi@example.it", "type": "office"}],
                "phones": [{"phone": "+390669820000", "type": "office"}],
            }
        ],
    },
}

REGIONS = {"generic-form": "GB", "generic-json": None, "tally": None, "google-ads": None}

EVENT_IDS = {
    "typeform": "LtWXD3crgy",
    "tally": "a4cb511e-d513-4fa5-baee-b815d718dfd1",
    "webflow": "6321ca84df3949bfc6752327",
    "calendly": (
        "invitee.created https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2"
        "/invitees/AAAAAAAAAAAAAAAA"
    ),
    "calcom": "BOOKING_CREATED bFJeNb2uX8ANpT3JL5EfXw",
    "unbounce": None,
    "google-ads": (
        "TeSter-123-ABCDEFGHIJKLMNOPQRSTUVWXYZ-abcdefghijklmnopqrstuvwxyz-0123456789"
        "-AaBbCcDdEeFfGgHhIiJjKkLl"
    ),
    "jotform": "5612345678901234567",
    "netlify": "5f85b3fe4d5ab2000849d5fb",
    "generic-form": None,
    "generic-json": "evt_01HZX3N7",
    "meta-lead-ads": "123",
    "hubspot": "1",
}
FIXTURES = bundled_fixtures()
THIN = {"meta-lead-ads": "meta", "hubspot": "hubspot"}


def _mapper(name: str) -> Mapper:
    spec = MappingSpec(preset=name, default_region=REGIONS.get(name, "US"))
    return Mapper(spec, source=name, presets=PRESETS)


def test_every_bundled_preset_is_covered() -> None:
    assert sorted(EXPECTED) == PRESETS.names()


def _example(name: str, **kw: Any) -> Any:
    """The preset's documented example as the worker maps it: a split delivery's first item,
    and for a thin preset what the provider answers for the id it names."""
    mapper = _mapper(name)
    example = envelope(payload(name), source=name, **kw)
    example = dataclasses.replace(example, body=mapper.split(example)[0])
    if name in THIN:
        fetched = FIXTURES[THIN[name]][str(mapper.fetch_id(example))]
        example = dataclasses.replace(example, fetched=fetched)
    return example


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_maps_documented_example_to_exact_lead(name: str) -> None:
    headers = {"referer": "https://www.example.co.uk/contact?utm_source=linkedin"}
    mapped = _mapper(name).map(_example(name, headers=headers))
    assert mapped.lead == EXPECTED[name]
    assert mapped.contact == EXPECTED[name]["contacts"][0]
    assert mapped.note is not None
    assert mapped.note.startswith(f"{PRESETS.get(name).note_title} \u2014 {name}\n")


@pytest.mark.parametrize("name", sorted(EVENT_IDS))
def test_preset_event_id(name: str) -> None:
    assert _mapper(name).event_id(_example(name)) == EVENT_IDS[name]


@pytest.mark.parametrize("name", sorted(THIN))
def test_a_thin_preset_without_its_fetch_says_it_sends_only_ids(name: str) -> None:
    thin = dataclasses.replace(_example(name), fetched=None)
    with pytest.raises(MappingRejected) as caught:
        _mapper(name).map(thin)
    assert caught.value.code == "ids-only"
    assert "sends only ids" in caught.value.reason
    assert "configure hydration" in caught.value.reason


def test_meta_custom_questions_go_to_extra_and_the_note() -> None:
    mapped = _mapper("meta-lead-ads").map(_example("meta-lead-ads"))
    assert mapped.record["extra"]["questions"] == {"how_many_roofs_per_month?": "10-20"}
    assert mapped.record["extra"]["campaign_id"] == "444"
    assert mapped.note is not None
    assert "how_many_roofs_per_month?: 10-20" in mapped.note
    assert mapped.record["attribution"]["utm_campaign"] == "Spring 2024"


def test_meta_split_keeps_only_leadgen_changes() -> None:
    mapper = _mapper("meta-lead-ads")
    items = mapper.split(envelope(payload("meta-lead-ads-batch"), source="m"))
    assert [item["leadgen_id"] for item in items] == [124, "125"]


def test_webflow_documented_fictional_phone_is_a_warning_not_a_loss() -> None:
    mapped = _mapper("webflow").map(envelope(payload("webflow"), source="webflow"))
    assert mapped.warnings == (
        "phone is not a valid number (default region US); left out of the contact",
    )
    assert mapped.note is not None
    assert "Phone Number: 15550000000" in mapped.note
    assert "(as submitted: 15550000000)" in mapped.note


def test_typeform_note_lists_questions_by_title_and_hidden_fields() -> None:
    mapped = _mapper("typeform").map(envelope(payload("typeform"), source="typeform"))
    assert mapped.note is not None
    assert "What is your first name?: Laura" in mapped.note
    assert "Which pictures do you like? You can choose as many as you like.: London, Sydney" in (
        mapped.note
    )
    assert "Do you have a favorite city we haven't listed?: no" in mapped.note
    assert "user_id: abc123456" in mapped.note


def test_calendly_keeps_attribution_in_record_and_note_not_in_lead() -> None:
    mapped = _mapper("calendly").map(envelope(payload("calendly"), source="calendly"))
    assert mapped.record["attribution"] == {
        "utm_source": "facebook",
        "utm_medium": "cpc",
        "utm_campaign": "spring_sale",
    }
    assert mapped.note is not None
    assert "Attribution:\nutm_source: facebook\nutm_medium: cpc\nutm_campaign: spring_sale" in (
        mapped.note
    )
    assert "Company: Acme Inc" in mapped.note


def test_generic_form_reads_page_and_attribution_from_fields() -> None:
    mapped = _mapper("generic-form").map(envelope(payload("generic-form")))
    assert mapped.record["attribution"] == {
        "utm_source": "linkedin",
        "utm_campaign": "q3-offices",
        "page_url": "https://www.example.co.uk/contact?utm_source=linkedin",
    }


def test_generic_form_falls_back_to_referer_header_for_page_and_utm() -> None:
    body = {"email": "a@example.com"}
    headers = {"referer": "https://example.com/pricing?utm_source=ads&gclid=abc"}
    mapped = _mapper("generic-form").map(envelope(body, headers=headers))
    assert mapped.record["attribution"] == {
        "utm_source": "ads",
        "gclid": "abc",
        "page_url": "https://example.com/pricing?utm_source=ads&gclid=abc",
    }


def test_unbounce_reads_page_url_from_form_field() -> None:
    mapped = _mapper("unbounce").map(envelope(payload("unbounce"), source="unbounce"))
    assert mapped.record["attribution"]["page_url"] == "http://unbouncepages.com/my-landing-page/"
    assert mapped.record["attribution"]["utm_source"] == "google"


def test_google_ads_attribution() -> None:
    mapped = _mapper("google-ads").map(envelope(payload("google-ads"), source="google-ads"))
    assert mapped.record["attribution"] == {
        "utm_source": "google",
        "utm_medium": "lead-form",
        "utm_campaign": "20000000000",
        "gclid": payload("google-ads")["gcl_id"],
    }


def test_presets_are_package_data_with_signature_facts() -> None:
    typeform = PRESETS.get("typeform")
    assert typeform.auth is not None
    assert typeform.auth["header"] == "Typeform-Signature"
    assert PRESETS.get("unbounce").content_types == ("application/x-www-form-urlencoded",)
    with pytest.raises(KeyError):
        PRESETS.get("acme-crm")


def test_extra_preset_directory_adds_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "acme-crm.yaml").write_text(
        "name: acme-crm\ndescription: Acme partner feed\nextract:\n  email: body.contact_email\n"
    )
    registry = load_presets([tmp_path])
    assert "acme-crm" in registry
    assert registry.get("acme-crm").extract == {"email": "body.contact_email"}
    assert "typeform" in registry


def test_invalid_preset_files_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: other\ndescription: x\nextract:\n  emial: body.e\n  phone: 'body.['\n"
    )
    (tmp_path / "worse.yaml").write_text("name: worse\nextract: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_presets([tmp_path])
    found = [(Path(i.file or "").name, i.path) for i in caught.value.issues]
    assert found == [
        ("bad.yaml", "extract.emial"),
        ("bad.yaml", "extract.phone"),
        ("bad.yaml", "name"),
        ("worse.yaml", "description"),
    ]


def _map(name: str, preset: str, region: str | None = None) -> Any:
    spec = MappingSpec(preset=preset, default_region=region)
    return Mapper(spec, source=name, presets=PRESETS).map(envelope(payload(name), source=name))


def test_webflow_fields_are_matched_by_meaning_in_the_test_delivery() -> None:
    mapped = _map("webflow-test-delivery", "webflow")  # "Email 2", and no default region
    assert mapped.identity.email == "ford@betelgeuse.example"
    assert mapped.record["full_name"] == "Ford Prefect"
    # The phone is a JSON number with its country code and no "+": read as international.
    assert mapped.identity.phone == "+14155552671"


def test_webflow_legacy_v1_shape_is_read() -> None:
    mapped = _map("webflow-v1", "webflow")
    assert (mapped.identity.email, mapped.record["full_name"]) == ("some.one@home.com", "Some One")
    assert _mapper("webflow").event_id(envelope(payload("webflow-v1"))) == (
        "6321ca84df3949bfc6752327"
    )


def test_tally_name_from_a_payment_field_and_choices_as_their_texts() -> None:
    mapped = _map("tally-choices", "tally")
    assert mapped.record["full_name"] == "Léa Dubois"
    assert mapped.identity.email == "lea.dubois@example.fr"
    assert mapped.note is not None
    for line in (
        "Which track?: Sales",
        "Topics: Pipelines, Sequences",
        "Team size: 11-50",
        "Tools you use: Close, Zapier",
        "Rank the sessions: Afternoon, Morning",
        "Rate us: Content: Great",
    ):
        assert line in mapped.note
    assert "e1d7c6b5-" not in mapped.note  # no option id reaches the note


def test_typeform_website_only_from_a_question_that_asks_for_one() -> None:
    mapped = _map("typeform-booking", "typeform", "GB")
    assert "url" not in mapped.lead  # the booking link is not the company's website
    assert "website" not in mapped.record


def test_an_all_digit_phone_without_region_reads_as_international_only_when_valid() -> None:
    spec = MappingSpec(extract={"phone": "body.p", "email": "body.e"})
    mapper = Mapper(spec, source="x", presets=PRESETS)
    read = mapper.map(envelope({"p": 442079460958, "e": "a@example.com"}))
    assert read.identity.phone == "+442079460958"
    local = mapper.map(envelope({"p": "4155552671", "e": "a@example.com"}))
    assert local.identity.phone is None  # no country code in it: still needs a region
