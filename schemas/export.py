"""Write the JSON Schema of every contract, one file each, for consumers.

>>> sorted(schema_documents())[:2]
['customer.schema.json', 'dead_letter.schema.json']
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.common import SCHEMA_VERSION
from schemas.inputs import CustomerEvent, Interaction, Transaction
from schemas.outputs import OUTPUT_MODELS

SCHEMA_DIR = Path(__file__).parent / "json"
CONTRACTS: tuple[type[BaseModel], ...] = (Transaction, Interaction, CustomerEvent, *OUTPUT_MODELS)


def _name(model: type[BaseModel]) -> str:
    return model.model_fields["event_type"].annotation.__args__[0]


def schema_documents() -> dict[str, str]:
    """File name -> JSON text of every contract's JSON Schema (stable formatting)."""
    documents = {}
    for model in CONTRACTS:
        mode = (
            "validation" if model in (Transaction, Interaction, CustomerEvent) else "serialization"
        )
        schema = model.model_json_schema(mode=mode)
        schema["$id"] = (
            f"https://clvstream.dev/schemas/v{SCHEMA_VERSION}/{_name(model)}.schema.json"
        )
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        documents[f"{_name(model)}.schema.json"] = (
            json.dumps(schema, indent=2, sort_keys=True) + "\n"
        )
    return documents


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write all schema files into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in schema_documents().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the current contracts."""
    stale = []
    for name, text in schema_documents().items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
