"""JSON Schema export of the contract (``vigil schema export DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter

from schemas.alerts import Alert
from schemas.events import EVENT_ADAPTER, KIND_MODELS
from schemas.evidence import DOCUMENTS

#: fields a producer may leave out although every stored event has them (Vigil fills them)
FILLED_AT_INGEST = ("event_id",)


def _as_input(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as producers see it: fields filled at ingest are not required."""
    for node in [schema, *schema.get("$defs", {}).values()]:
        if "required" in node:
            node["required"] = [f for f in node["required"] if f not in FILLED_AT_INGEST]
    return schema


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema, for the event union, each kind, the alert and the
    evidence documents."""
    out: dict[str, dict[str, Any]] = {"event.schema.json": _as_input(EVENT_ADAPTER.json_schema())}
    for kind, model in KIND_MODELS.items():
        out[f"event.{kind}.schema.json"] = _as_input(model.model_json_schema())
    out["alert.schema.json"] = TypeAdapter(Alert).json_schema(by_alias=True)
    for name, document in DOCUMENTS.items():
        out[name] = document.model_json_schema()
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
