"""A built-in emulator of the Close API, for tests, ``make run`` and chaos and benchmark runs.

A sibling of ``service/`` in the same distribution that imports nothing from it (an
import-linter contract keeps it so), so it cannot quietly copy the client's assumptions: it
follows Close's documented behaviour, awkward parts included. ``app.py`` says how it is laid out.
"""

from close_emulator.app import create_emulator_app, run_emulator
from close_emulator.options import (
    DEFAULT_API_KEY,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EmulatorOptions,
    Fault,
    LeadStatus,
    add_emulator_arguments,
)
from close_emulator.org import OrgFileError, load_org, options_from_args, options_with_org
from close_emulator.state import EMULATOR_STATE, EmulatorState, RequestRecord
from close_emulator.team import CustomFieldSpec

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EMULATOR_STATE",
    "CustomFieldSpec",
    "EmulatorOptions",
    "EmulatorState",
    "Fault",
    "LeadStatus",
    "OrgFileError",
    "RequestRecord",
    "add_emulator_arguments",
    "create_emulator_app",
    "load_org",
    "options_from_args",
    "options_with_org",
    "run_emulator",
]
