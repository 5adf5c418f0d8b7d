"""The paper's numbers (paper_numbers.json beside this module, each with the table it
comes from), written down once for reports/paper.md and reports/tables.md."""

from __future__ import annotations

import json
from pathlib import Path

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.json")


def paper_numbers() -> dict:
    return json.loads(PAPER_NUMBERS.read_text())
