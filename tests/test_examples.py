"""Every example configuration of the README and docs/ passes `lead-intake check-config`
against the emulator (the organisation `make run` emulates, config/emulator-org.yaml), and so
does config/sources.yaml. Their custom field names and status labels are checked, not only
their shape: an example that check-config passes also starts with `make run`.

An example configuration is a YAML block with a top-level ``sources:``, or a block that is one
indented source entry (``  name:`` then ``    kind:``), read inside ``sources:``. The secrets
they reference as ``env:NAME`` are given dummy values, as a user would set them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_cli import run_cli

BLOCK = re.compile(r"^```ya?ml\n(.*?)^```", re.MULTILINE | re.DOTALL)
ENTRY = re.compile(r"\A  [a-z0-9][a-z0-9_-]*:\n    kind:")
SECRET = re.compile(r"env:([A-Z][A-Z0-9_]*)")


def example_configurations() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, match in enumerate(BLOCK.finditer(doc.read_text(encoding="utf-8")), 1):
            text = match.group(1)
            if re.search(r"^sources:", text, re.MULTILINE):
                found.append((f"{doc.relative_to(ROOT)}#{number}", text))
            elif ENTRY.match(text):
                found.append((f"{doc.relative_to(ROOT)}#{number}", "sources:\n" + text))
    return found


EXAMPLES = example_configurations()


def test_the_examples_are_found() -> None:
    # The README's worked example, the three of docs/mapping.md, the two of sources-and-auth.
    assert len(EXAMPLES) >= 6, [name for name, _ in EXAMPLES]
    assert EXAMPLES[0][0] == "README.md#1"


@pytest.mark.parametrize(
    "text",
    [text for _, text in EXAMPLES] + [(ROOT / "config/sources.yaml").read_text()],
    ids=[name for name, _ in EXAMPLES] + ["config/sources.yaml"],
)
async def test_example_passes_check_config_against_the_emulator(text: str, tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    secrets = {name: "whsec_" + "c2VjcmV0LXZhbHVlLWZvci10ZXN0cw==" for name in SECRET.findall(text)}
    code, out, err = await run_cli("check-config", str(path), env=secrets)
    assert code == 0, err
    assert "checked against the emulator's organisation config/emulator-org.yaml" in out
