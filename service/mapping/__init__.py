"""Mapping engine: any form or provider payload -> a Close lead body, a contact and a note.

Public API::

    presets = load_presets()
    mapper = Mapper(spec, source="website", presets=presets, schema=close_schema)
    mapped = mapper.map(envelope)          # MappedLead, or raises MappingRejected
    preview(mapped)                        # what `lead-intake map` prints
    validate_spec(spec, source=..., presets=presets, schema=...)   # for check-config
"""

from service.mapping.engine import Identity, MappedLead, Mapper, preview, validate_spec
from service.mapping.functions import FUNCTION_NAMES
from service.mapping.presets import Preset, PresetRegistry, load_presets
from service.mapping.schema import CloseSchema, CustomField, Status
from service.mapping.spec import (
    ContactTemplate,
    LeadTemplate,
    MappingLimits,
    MappingSpec,
    NoteSpec,
)

__all__ = [
    "FUNCTION_NAMES",
    "CloseSchema",
    "ContactTemplate",
    "CustomField",
    "Identity",
    "LeadTemplate",
    "MappedLead",
    "Mapper",
    "MappingLimits",
    "MappingSpec",
    "NoteSpec",
    "Preset",
    "PresetRegistry",
    "Status",
    "load_presets",
    "preview",
    "validate_spec",
]
