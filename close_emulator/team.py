"""The sales side of the emulated organisation, as configuration: groups of users, connected
(sender) accounts, sequences, opportunity pipelines with their statuses, and custom activity
types with their fields (close-api-actions.md §1, §5-§7); and the custom field definition both
lead and contact fields and an activity type's fields are (``CustomFieldSpec``).

Models only (``EmulatorOptions`` holds them, the organisation file fills them); what Close does
with them is in ``sales.py`` (groups, accounts, sequences, tasks) and ``deals.py``
(opportunities, custom activities). Ids may be given, or are derived from the name (the same on
every run). Users are named by email or id; ``EmulatorOptions`` checks they exist.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from close_emulator.ids import derived_id, with_derived_id
from close_emulator.values import FieldType, definition_problem, value_problem


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Group(_Model):
    """``GET /group/{id}/``: a named set of users (members by email or id)."""

    id: str = ""
    name: str = Field(min_length=1)
    members: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, value: Any) -> Any:
        return with_derived_id(value, "group_", "name")


class ConnectedAccount(_Model):
    """A user's connected email account (``GET /connected_account/``), what a sequence sends
    as. ``email`` defaults to the user's own address."""

    id: str = ""
    user: str = Field(min_length=1)
    """The user it belongs to, by email or id."""
    email: str | None = None
    type: Literal["google", "custom_email", "microsoft"] = "google"

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, value: Any) -> Any:
        if isinstance(value, dict) and not value.get("id") and isinstance(value.get("user"), str):
            text = f"{value['user'].casefold()}|{value.get('email') or ''}"
            value = {**value, "id": derived_id("emailacct_", text)}
        return value


class SequenceStep(_Model):
    step_type: Literal["email", "call"] = "email"
    delay: int = Field(0, ge=0)
    """Seconds after the previous step."""


class Sequence(_Model):
    """``GET /sequence/``: an email sequence contacts can be subscribed to."""

    id: str = ""
    name: str = Field(min_length=1)
    status: Literal["active", "paused", "archived"] = "active"
    timezone: str = "US/Eastern"
    steps: list[SequenceStep] = Field(default_factory=lambda: [SequenceStep()])

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, value: Any) -> Any:
        return with_derived_id(value, "seq_", "name")


class PipelineStatus(_Model):
    """An opportunity status: ``active`` (open), ``won`` or ``lost``."""

    id: str = ""
    label: str = Field(min_length=1)
    type: Literal["active", "won", "lost"] = "active"


class Pipeline(_Model):
    """``GET /pipeline/``: opportunity statuses in order (the first is a new one's default)."""

    id: str = ""
    name: str = Field(min_length=1)
    statuses: list[PipelineStatus] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _fill_ids(cls, value: Any) -> Any:
        value = with_derived_id(value, "pipe_", "name")
        if isinstance(value, dict) and isinstance(value.get("statuses"), list):
            name = str(value.get("name"))
            statuses = []
            for given in value["statuses"]:
                status = {"label": given} if isinstance(given, str) else given
                if isinstance(status, dict) and not status.get("id") and status.get("label"):
                    status = {**status, "id": derived_id("stat_", f"{name}|{status['label']}")}
                statuses.append(status)
            value = {**value, "statuses": statuses}
        return value


class CustomFieldSpec(_Model):
    """A custom field definition as ``GET /custom_field_schema/<type>/`` shows it."""

    ID_PREFIXES: ClassVar[tuple[str, ...]] = ("cf_", "lcf_")
    """How its ids start (``lcf_``: old fields)."""

    id: str = ""
    name: str = Field(min_length=1)
    type: FieldType = "text"
    description: str = ""
    choices: list[str] | None = None
    accepts_multiple_values: bool = False

    @model_validator(mode="before")
    @classmethod
    def _fill_id(cls, value: Any) -> Any:
        return with_derived_id(value, "cf_", "name")

    @model_validator(mode="after")
    def _check(self) -> CustomFieldSpec:
        if not self.id.startswith(self.ID_PREFIXES):
            raise ValueError(f"custom field ids start with {' or '.join(self.ID_PREFIXES)}")
        problem = definition_problem(self.type, self.choices, self.accepts_multiple_values)
        if problem:
            raise ValueError(problem)
        return self

    def check_value(self, value: Any) -> str | None:
        """An error message if ``value`` is not a valid single value of this field."""
        return value_problem(self.type, self.choices, value)


class ActivityField(CustomFieldSpec):
    """A field of a custom activity type (its values go as ``custom.cf_...`` keys)."""

    ID_PREFIXES: ClassVar[tuple[str, ...]] = ("cf_",)

    required: bool = False


class CustomActivityType(_Model):
    """``GET /custom_activity/``: a kind of structured activity and its fields."""

    id: str = ""
    name: str = Field(min_length=1)
    description: str = ""
    api_create_only: bool = False
    is_archived: bool = False
    fields: list[ActivityField] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _fill_ids(cls, value: Any) -> Any:
        value = with_derived_id(value, "actitype_", "name")
        if isinstance(value, dict) and isinstance(value.get("fields"), list):
            name = str(value.get("name"))
            fields = [
                {**f, "id": derived_id("cf_", f"{name}|{f['name']}")}
                if isinstance(f, dict) and not f.get("id") and isinstance(f.get("name"), str)
                else f
                for f in value["fields"]
            ]
            value = {**value, "fields": fields}
        return value


def default_pipelines() -> list[Pipeline]:
    return [
        Pipeline.model_validate(
            {
                "name": "Sales",
                "statuses": [
                    {"label": "New", "type": "active"},
                    {"label": "Demo", "type": "active"},
                    {"label": "Won", "type": "won"},
                    {"label": "Lost", "type": "lost"},
                ],
            }
        )
    ]
