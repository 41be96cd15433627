"""Mapping engine: any form or provider payload -> a Close lead body, a contact and a note.

Public API::

    presets = load_presets()               # service.config.presets: a PresetLookup
    mapper = Mapper(spec, source="website", presets=presets, schema=close_schema)
    mapped = mapper.map(envelope)          # MappedLead, or raises MappingRejected
    preview(mapped)                        # what `lead-intake map` prints
    validate_spec(spec, source=..., presets=presets, schema=...)   # for check-config
"""

from service.mapping.engine import Identity, MappedLead, Mapper, preview, validate_spec
from service.mapping.jmes import FUNCTION_NAMES
from service.mapping.schema import CloseSchema, CustomField, Status
from service.mapping.spec import (
    ContactTemplate,
    LeadTemplate,
    MappingLimits,
    MappingPreset,
    MappingSpec,
    NoteSpec,
    PresetLookup,
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
    "MappingPreset",
    "MappingSpec",
    "NoteSpec",
    "PresetLookup",
    "Status",
    "preview",
    "validate_spec",
]
