"""The emulated organisation, from a YAML file: its users, lead statuses and custom fields.

``lead-intake emulator --org FILE`` reads one, and so does ``make run`` (``lead-intake dev``
reads ``INTAKE_EMULATOR_ORG_FILE``, by default ``config/emulator-org.yaml``). The format::

    organization:                 # optional; the id is derived from the name when left out
      name: Acme (emulated)
    users:                        # GET /user/; the first active one owns the API key (/me/)
      - {email: ann@acme.example, name: Ann Lee}
      - {email: bo@acme.example, name: Bo Berg, active: false}
    lead_statuses: [Potential, Qualified, Customer]   # the first is a new lead's default
    custom_fields:
      lead:                       # GET /custom_field_schema/lead/
        - {name: Plan, type: choices, choices: [Pro, Team, Other]}
        - {name: Employees, type: number}
        - {name: Lead Owner, type: user}    # a "user" field: where the lead's owner goes
      contact:
        - {name: LinkedIn}
    groups:                       # GET /group/: members by email (or id)
      - {name: Sales Team, members: [ann@acme.example]}
    connected_accounts:           # sender accounts; left out: one per user, their own address
      - {user: ann@acme.example}
    sequences:                    # GET /sequence/
      - {name: Inbound nurture}
    pipelines:                    # GET /pipeline/; the first status is a new opportunity's
      - name: Sales
        statuses: [{label: Demo requested}, {label: Won, type: won}, {label: Lost, type: lost}]
    custom_activity_types:        # GET /custom_activity/
      - name: Web Form Submission
        fields: [{name: Source, required: true}, {name: Page}]

One top-level section per kind of object, each validated on its own (pydantic, unknown keys an
error); a section left out keeps the emulator's built-in default. Ids may be given (to match a
real organisation's) or are derived from the name, label or email, so they stay the same from
one run to the next.

Adding a kind of object: its model (``options.py`` for users, statuses and fields, ``team.py``
for the sales side), a section on :class:`OrgFile` and the matching field on ``EmulatorOptions``
(filled in :meth:`OrgFile.options`), the routes that serve it (``api.py``, ``users.py``,
``sales.py``...), and its paragraph in docs/operations.md ("The emulator's organisation").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from close_emulator.ids import with_derived_id
from close_emulator.options import (
    FLAG_DESTS,
    EmulatorOptions,
    LeadStatus,
    User,
)
from close_emulator.team import (
    ConnectedAccount,
    CustomActivityType,
    CustomFieldSpec,
    Group,
    Pipeline,
    Sequence,
)


class OrgFileError(ValueError):
    """An organisation file that cannot be used; ``problems`` are (key path, message) pairs."""

    def __init__(self, file: str, problems: list[tuple[str, str]]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(
            "\n".join(f"{file}: {path or '<root>'}: {text}" for path, text in problems)
        )


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Organization(_Section):
    id: str = ""
    name: str = Field(min_length=1)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    """Opportunity values are in this currency's minor unit (cents)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, value: Any) -> Any:
        return with_derived_id(value, "orga_", "name")


class CustomFields(_Section):
    """Custom fields per object type, as ``/custom_field_schema/<type>/`` lists them."""

    lead: list[CustomFieldSpec] = Field(default_factory=list)
    contact: list[CustomFieldSpec] = Field(default_factory=list)


class OrgFile(_Section):
    """The whole file: one section per kind of object."""

    organization: Organization | None = None
    users: list[User] | None = Field(default=None, min_length=1)
    lead_statuses: list[LeadStatus] | None = Field(default=None, min_length=1)
    custom_fields: CustomFields | None = None
    groups: list[Group] | None = None
    connected_accounts: list[ConnectedAccount] | None = None
    sequences: list[Sequence] | None = None
    pipelines: list[Pipeline] | None = Field(default=None, min_length=1)
    custom_activity_types: list[CustomActivityType] | None = None

    def options(self) -> dict[str, Any]:
        """The ``EmulatorOptions`` fields this file sets (sections left out are not set)."""
        out: dict[str, Any] = {}
        if self.organization is not None:
            out["organization_id"] = self.organization.id
            out["organization_name"] = self.organization.name
            out["value_currency"] = self.organization.currency
        if self.users is not None:
            out["users"] = self.users
        if self.lead_statuses is not None:
            out["lead_statuses"] = self.lead_statuses
        for name in _SALES:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.custom_fields is not None:
            fields = self.custom_fields.model_fields_set
            if "lead" in fields:
                out["lead_custom_fields"] = self.custom_fields.lead
            if "contact" in fields:
                out["contact_custom_fields"] = self.custom_fields.contact
        return out


_SALES = ("groups", "connected_accounts", "sequences", "pipelines", "custom_activity_types")
"""Sections given to ``EmulatorOptions`` as they are (models of ``team.py``)."""


def _loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for item in loc:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else str(item))
    return text


def parse_org(data: Any, file: str = "<organisation>") -> dict[str, Any]:
    """The ``EmulatorOptions`` fields of parsed YAML data; OrgFileError listing every problem."""
    if data is None:
        return {}
    try:
        parsed = OrgFile.model_validate(data)
    except ValidationError as exc:
        problems = [(_loc(err["loc"]), err["msg"]) for err in exc.errors(include_url=False)]
        raise OrgFileError(file, problems) from None
    return parsed.options()


def load_org(path: Path) -> dict[str, Any]:
    """Read the organisation file at ``path``: the ``EmulatorOptions`` fields it sets."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OrgFileError(str(path), [("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise OrgFileError(str(path), [(where, f"not valid YAML: {exc}")]) from None
    return parse_org(data, str(path))


def options_with_org(path: Path | None, **given: Any) -> EmulatorOptions:
    """``EmulatorOptions`` from ``given`` (flags) and the organisation file at ``path`` (None:
    the built-in organisation); OrgFileError when the file, or the whole, does not hold."""
    org = load_org(path) if path is not None else {}
    try:
        return EmulatorOptions(**{**org, **given})
    except ValidationError as exc:
        problems = [(_loc(err["loc"]), err["msg"]) for err in exc.errors(include_url=False)]
        raise OrgFileError(str(path or "<options>"), problems) from None


def options_from_args(ns: argparse.Namespace) -> EmulatorOptions:
    """Options from parsed flags (``add_emulator_arguments``) and ``--org``; raises
    OrgFileError naming every bad value."""
    given = {name: getattr(ns, name) for name in FLAG_DESTS if getattr(ns, name, None) is not None}
    return options_with_org(getattr(ns, "org_file", None), **given)
