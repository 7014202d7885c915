"""The ``pii`` section of the rules file: redaction policy per entity, alert quiet period."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.detectors.latency.windows import parse_seconds
from streams.detectors.pii.entities import ENTITY_NAMES
from streams.detectors.pii.scanner import Policy


class PiiConfig(BaseModel):
    """The ``pii`` section of the rules file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_policy: Policy = "redact"
    policies: dict[str, Policy] = {}
    quiet_period: Annotated[str | float, Field()] = "10m"

    @field_validator("policies")
    @classmethod
    def _known_entities(cls, policies: dict[str, Policy]) -> dict[str, Policy]:
        unknown = sorted(set(policies) - set(ENTITY_NAMES))
        if unknown:
            raise ValueError(f"unknown entities {unknown}; known: {', '.join(ENTITY_NAMES)}")
        return policies

    @field_validator("quiet_period")
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        parse_seconds(value)
        return value

    def policy(self, entity: str) -> Policy:
        return self.policies.get(entity, self.default_policy)

    @property
    def quiet_period_s(self) -> float:
        return parse_seconds(self.quiet_period)
