"""The ``funnels`` section of the rules file: ordered funnels and their stage thresholds.

A funnel names its steps by event name (optionally with property conditions), the person
key, one conversion window and an order mode. Stage ``k`` (k >= 2) is the conversion from
step ``k-1`` to step ``k``; each carries the expected conversion (documentation and the
``vigil funnel`` table), the alert threshold, the time ``within`` which a person who
reached step ``k-1`` is expected to reach step ``k`` (the alert judges conversion within
that time, so a collapse shows in minutes, not when 24-hour windows close), a severity
and a minimum sample. Tenants override thresholds by stage name.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.alerts import Severity
from streams.detectors.latency.windows import parse_seconds

Scalar = str | int | float | bool
MAX_STEPS = 32  # windowFunnel's own limit


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _seconds(value: Any) -> float:
    try:
        seconds = parse_seconds(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


class Step(_Strict):
    """One step: events named ``event`` whose top-level ``properties`` equal ``where``."""

    event: Annotated[str, Field(min_length=1, max_length=128)]
    where: dict[str, Scalar] = {}
    #: the stage's name in alerts and tables (default: the event name)
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")] | None = None
    # --- the stage into this step (ignored on step 1) ---
    expected: Annotated[float, Field(gt=0, le=1)] | None = None
    alert_below: Annotated[float, Field(ge=0, le=1)] | None = None
    #: default: the stage's observed p95 time to convert (of the journeys that reached the
    #: previous step in the period one window earlier, whose windows have all closed)
    within: str | float | None = None
    severity: Severity = "high"
    min_sample: Annotated[int, Field(ge=1)] = 30

    @field_validator("within")
    @classmethod
    def _within(cls, value: str | float | None) -> str | float | None:
        if value is not None:
            _seconds(value)
        return value

    @property
    def label(self) -> str:
        return self.name or self.event

    def matches(self, properties: dict[str, Any]) -> bool:
        # type-strict, like the SQL's comparison of the raw JSON text (1 is not true)
        for key, wanted in self.where.items():
            value = properties.get(key)
            if type(value) is not type(wanted) or value != wanted:
                return False
        return True

    def sql(self) -> str:
        """The step's condition in ClickHouse SQL over the events table."""
        cond = [f"event_name = {_quote(self.event)}"]
        for key, wanted in self.where.items():
            raw = orjson.dumps(wanted).decode()
            cond.append(f"JSONExtractRaw(properties, {_quote(key)}) = {_quote(raw)}")
        return " AND ".join(cond)


def stage_conditions(
    prev: int, cur: int, since_ms: int, until_ms: int, within_ms: int
) -> tuple[str, str]:
    """ClickHouse conditions over ``funnel_progress`` for a judged stage (steps ``prev``
    -> ``cur``, 1-based): the journey reached ``prev`` in [since, until), and it reached
    ``cur`` within ``within_ms`` of it."""
    judged = f"reached_ms[{prev}] >= {since_ms} AND reached_ms[{prev}] < {until_ms}"
    converted = f"reached_ms[{cur}] >= 0 AND reached_ms[{cur}] - reached_ms[{prev}] <= {within_ms}"
    return judged, converted


def duration_text(ms: float) -> str:
    """A stage's X as the rules file writes it: 10m, 1h, 1d, 90s."""
    s = ms / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s:g}s"


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Overall(_Strict):
    """Step 1 → last step within the window; off by default (see the README)."""

    enabled: bool = False
    alert_below: Annotated[float, Field(ge=0, le=1)] = 0.5
    severity: Severity = "critical"
    min_sample: Annotated[int, Field(ge=1)] = 30


class Funnel(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    person: Literal["user_id_hash"] = "user_id_hash"
    window: str | float = "24h"
    order: Literal["ordered", "strict"] = "ordered"
    steps: Annotated[tuple[Step, ...], Field(min_length=2, max_length=MAX_STEPS)]
    overall: Overall = Overall()

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | float) -> str | float:
        _seconds(value)
        return value

    @model_validator(mode="after")
    def _stages(self) -> Funnel:
        labels = [s.label for s in self.steps]
        if len(set(labels)) != len(labels):
            raise ValueError(f"funnel {self.name}: two steps share a name; give them `name`s")
        for step in self.steps[1:]:
            if step.within is not None and _seconds(step.within) > self.window_ms / 1000:
                raise ValueError(
                    f"funnel {self.name}: stage {step.label}: `within` is longer than the "
                    "funnel's window (nobody converts after the window)"
                )
        return self

    @cached_property
    def window_ms(self) -> int:
        return round(_seconds(self.window) * 1000)

    @cached_property
    def event_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.event for s in self.steps))

    def auto_within(self, stage: int) -> bool:
        """Stage ``stage`` (2..N) has no configured ``within``: its ``X`` is its observed
        p95 time to convert (see the engine)."""
        return stage <= len(self.steps) and self.steps[stage - 1].within is None

    def within_ms(self, stage: int) -> int:
        """``X`` of stage ``stage`` (1-based step index >= 2), in ms; the window where it
        is not configured (the detector then judges with the observed p95)."""
        within = self.steps[stage - 1].within
        return self.window_ms if within is None else round(_seconds(within) * 1000)

    def level_sql(self, ts: str = "ts") -> str:
        """``windowFunnel(...)`` over the events table that equals this funnel's level."""
        mode = ", 'strict_order'" if self.order == "strict" else ""
        conds = ", ".join(f"({s.sql()})" for s in self.steps)
        return (
            f"windowFunnel({self.window_ms}{mode})(toUInt64(toUnixTimestamp64Milli({ts})), {conds})"
        )

    def filter_sql(self) -> str:
        names = ", ".join(_quote(n) for n in self.event_names)
        return f"kind = 'analytics' AND event_name IN ({names})"


class StageOverride(_Strict):
    alert_below: Annotated[float, Field(ge=0, le=1)] | None = None
    min_sample: Annotated[int, Field(ge=1)] | None = None
    severity: Severity | None = None


class FunnelOverride(_Strict):
    match: dict[Literal["tenant"], str]
    funnel: str
    stages: dict[str, StageOverride] = {}  # by stage name
    overall: StageOverride | None = None


class Threshold(_Strict):
    alert_below: float
    min_sample: int
    severity: Severity


class FunnelConfig(_Strict):
    """The ``funnels`` section."""

    enabled: bool = True
    grace_seconds: Annotated[int, Field(ge=0)] = 60
    #: the sliding period over which a stage's conversion within ``X`` is judged
    period: str | float = "2h"
    #: how often (event time) the stages are judged
    evaluate_every: str | float = "1m"
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.95
    #: a partition without input this long: its watermark follows the wall clock
    idle_timeout_seconds: Annotated[int, Field(ge=1)] = 30
    definitions: tuple[Funnel, ...] = ()
    overrides: tuple[FunnelOverride, ...] = ()

    @field_validator("period", "evaluate_every")
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        _seconds(value)
        return value

    @model_validator(mode="after")
    def _known(self) -> FunnelConfig:
        names = [f.name for f in self.definitions]
        if len(set(names)) != len(names):
            raise ValueError("two funnels share a name")
        by_name = {f.name: f for f in self.definitions}
        for o in self.overrides:
            funnel = by_name.get(o.funnel)
            if funnel is None:
                raise ValueError(f"override for unknown funnel {o.funnel!r}; known: {names}")
            stages = {s.label for s in funnel.steps[1:]}
            unknown = sorted(set(o.stages) - stages)
            if unknown:
                raise ValueError(
                    f"override of {o.funnel}: unknown stage {', '.join(unknown)}; "
                    f"stages: {', '.join(sorted(stages))}"
                )
        return self

    @cached_property
    def period_ms(self) -> int:
        return round(_seconds(self.period) * 1000)

    @cached_property
    def every_ms(self) -> int:
        return round(_seconds(self.evaluate_every) * 1000)

    @cached_property
    def step_events(self) -> frozenset[str]:
        return frozenset(n for f in self.definitions for n in f.event_names)

    def threshold(self, funnel: Funnel, stage: int, tenant: str) -> Threshold | None:
        """The alert threshold of stage ``stage`` (2..N; N+1 = overall) for ``tenant``,
        or None if the stage raises no alert."""
        if stage == len(funnel.steps) + 1:
            base: Threshold | None = (
                Threshold(
                    alert_below=funnel.overall.alert_below,
                    min_sample=funnel.overall.min_sample,
                    severity=funnel.overall.severity,
                )
                if funnel.overall.enabled
                else None
            )
            label = None
        else:
            step = funnel.steps[stage - 1]
            base = (
                Threshold(
                    alert_below=step.alert_below,
                    min_sample=step.min_sample,
                    severity=step.severity,
                )
                if step.alert_below is not None
                else None
            )
            label = step.label
        if base is None:
            return None
        for o in self.overrides:
            if o.funnel != funnel.name or o.match.get("tenant") != tenant:
                continue
            change = o.overall if label is None else o.stages.get(label)
            if change is not None:
                base = base.model_copy(update=change.model_dump(exclude_none=True))
        return base
