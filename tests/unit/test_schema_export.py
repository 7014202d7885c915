"""The checked-in JSON Schemas in schemas/jsonschema/ must match the models."""

from __future__ import annotations

from pathlib import Path

import orjson

from schemas.export import export, json_schemas, render
from streams.cli import main

CHECKED_IN = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"


def test_checked_in_schemas_are_in_sync() -> None:
    expected = json_schemas()
    on_disk = {p.name for p in CHECKED_IN.glob("*.json")}
    assert on_disk == set(expected), "run `vigil schema export schemas/jsonschema`"
    for name, schema in expected.items():
        assert (CHECKED_IN / name).read_bytes() == render(schema), (
            f"{name} is stale: run `vigil schema export schemas/jsonschema`"
        )


def test_export_command_writes_every_schema(tmp_path: Path) -> None:
    assert main(["schema", "export", str(tmp_path)]) == 0
    union = orjson.loads((tmp_path / "event.schema.json").read_bytes())
    assert union["discriminator"]["propertyName"] == "kind"
    assert len(export(tmp_path)) == len(json_schemas())
    alert = orjson.loads((tmp_path / "alert.schema.json").read_bytes())
    assert "startsAt" in str(alert)
