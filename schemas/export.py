"""JSON Schema export of the contract (``vigil schema export DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from schemas.alerts import Alert
from schemas.events import EVENT_ADAPTER, KIND_MODELS


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for the event union, each kind, and the alert."""
    out: dict[str, dict[str, Any]] = {"event.schema.json": EVENT_ADAPTER.json_schema()}
    for kind, model in KIND_MODELS.items():
        out[f"event.{kind}.schema.json"] = model.model_json_schema()
    out["alert.schema.json"] = TypeAdapter(Alert).json_schema(by_alias=True)
    return out


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_bytes(render(schema))
        written.append(path)
    return written
