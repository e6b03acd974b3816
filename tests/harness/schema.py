"""
The event schema deploywatch ships (``deploywatch/schema/event-v1.json``) and one validator
for it: the unit tests check what they build, and the harness every line the operator
prints, against the same file, read from the installed package as its users get it.
"""
import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA: dict[str, Any] = json.loads(
    resources.files('deploywatch').joinpath('schema/event-v1.json').read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
