"""The ``security`` section of the rules file: base rules and Sigma-shaped correlations.

Base rules select events (``kind`` and field values, like a Sigma rule's ``selection``);
correlations count them in exact sliding windows, in the vocabulary of Sigma correlation
rules (SigmaHQ specification v2): ``type``, ``rules``, ``group-by``, ``timespan``,
``condition``, plus Vigil's ``alertname`` (an entry of the alert catalogue). What Sigma
cannot express — a cross-tenant access compares two fields of one event — is a built-in
rule (``cross_tenant``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.events import KIND_MODELS
from streams.catalogue import CATALOGUE
from streams.detectors.latency.windows import parse_seconds
from streams.detectors.security.window import Op

Scalar = str | int | bool


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class BaseRule(_Strict):
    """Events of one kind whose fields equal the given values (a list: any of them)."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    kind: str
    where: dict[str, Scalar | tuple[Scalar, ...]] = {}

    @model_validator(mode="after")
    def _known_fields(self) -> BaseRule:
        model = KIND_MODELS.get(self.kind)
        if model is None:
            raise ValueError(
                f"rule {self.name}: unknown kind {self.kind!r}; known: {', '.join(KIND_MODELS)}"
            )
        unknown = sorted(set(self.where) - set(model.model_fields))
        if unknown:
            raise ValueError(
                f"rule {self.name}: {self.kind} has no field {', '.join(unknown)}; its "
                f"fields: {', '.join(model.model_fields)}"
            )
        return self

    def matches(self, event: Any) -> bool:
        for name, wanted in self.where.items():
            value = getattr(event, name, None)
            if isinstance(wanted, tuple):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return True


class Condition(_Strict):
    """Exactly one comparison; ``field`` is the counted field of a ``value_count``."""

    gt: Annotated[int, Field(ge=0)] | None = None
    gte: Annotated[int, Field(ge=0)] | None = None
    lt: Annotated[int, Field(ge=0)] | None = None
    lte: Annotated[int, Field(ge=0)] | None = None
    eq: Annotated[int, Field(ge=0)] | None = None
    neq: Annotated[int, Field(ge=0)] | None = None
    field: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Condition:
        set_ops = [
            op for op in ("gt", "gte", "lt", "lte", "eq", "neq") if getattr(self, op) is not None
        ]
        if len(set_ops) != 1:
            raise ValueError(
                f"condition needs exactly one of gt, gte, lt, lte, eq, neq; got {set_ops}"
            )
        return self

    @property
    def op(self) -> Op:
        for op in ("gt", "gte", "lt", "lte", "eq", "neq"):
            if getattr(self, op) is not None:
                return op
        raise AssertionError

    @property
    def threshold(self) -> int:
        value = getattr(self, self.op)
        assert isinstance(value, int)
        return value


CorrelationType = Literal["event_count", "value_count", "temporal", "temporal_ordered"]
TEMPORAL: frozenset[str] = frozenset({"temporal", "temporal_ordered"})


class Correlation(_Strict):
    """A Sigma correlation. ``temporal`` / ``temporal_ordered`` list their steps in
    ``rules``: base rules, or count correlations (their holding windows are the step's
    occurrences) grouped by the same fields; they take no ``condition``."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    alertname: str
    type: CorrelationType
    rules: tuple[str, ...]
    group_by: Annotated[tuple[str, ...], Field(alias="group-by")] = ()
    timespan: str | float
    condition: Condition | None = None
    #: Vigil's extension: a threshold per value of the first group-by field (e.g. per
    #: webhook provider); Sigma exports use ``condition``
    thresholds_by_group: dict[str, Annotated[int, Field(ge=0)]] = {}

    @field_validator("timespan")
    @classmethod
    def _duration(cls, value: str | float) -> str | float:
        if parse_seconds(value) <= 0:
            raise ValueError("timespan must be positive")
        return value

    @field_validator("alertname")
    @classmethod
    def _catalogued(cls, value: str) -> str:
        if value not in CATALOGUE:
            raise ValueError(
                f"alertname {value!r} is not in the alert catalogue (streams/catalogue.py)"
            )
        return value

    @model_validator(mode="after")
    def _counted_field(self) -> Correlation:
        if self.type in TEMPORAL:
            if self.condition is not None:
                raise ValueError(
                    f"correlation {self.name}: {self.type} takes no condition (every step "
                    "within the timespan)"
                )
            if len(self.rules) < 2:
                raise ValueError(f"correlation {self.name}: {self.type} needs two or more rules")
            return self
        if self.condition is None:
            raise ValueError(f"correlation {self.name}: {self.type} needs a condition")
        if self.type == "value_count" and not self.condition.field:
            raise ValueError(f"correlation {self.name}: value_count needs condition.field")
        if self.type == "event_count" and self.condition.field:
            raise ValueError(f"correlation {self.name}: condition.field is for value_count")
        return self

    @property
    def timespan_ms(self) -> int:
        return int(parse_seconds(self.timespan) * 1000)

    @property
    def op(self) -> Op:
        return "gte" if self.condition is None else self.condition.op

    @property
    def base_threshold(self) -> int:
        return len(self.rules) if self.condition is None else self.condition.threshold

    @property
    def counted_field(self) -> str | None:
        return None if self.condition is None else self.condition.field

    @property
    def spans_tenants(self) -> bool:
        """Its groups may hold events of several tenants (so of several partitions)."""
        return "tenant_id" not in self.group_by


class Match(_Strict):
    tenant: str | None = None


class Override(_Strict):
    """Per tenant: other thresholds (by correlation name or alert name), or rules off."""

    match: Match = Match()
    thresholds: dict[str, Annotated[int, Field(ge=0)]] = {}
    disable: tuple[str, ...] = ()


class SecurityConfig(_Strict):
    grace_seconds: Annotated[int, Field(ge=0)] = 10
    quiet_period: str | float = "5m"
    #: a partition without input this long: its watermark follows the wall clock
    idle_timeout_seconds: Annotated[int, Field(ge=1)] = 30
    cross_tenant: bool = True  # the built-in CrossTenantAccess rule
    rules: tuple[BaseRule, ...] = ()
    correlations: tuple[Correlation, ...] = ()
    overrides: tuple[Override, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> SecurityConfig:
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"base rule names must be unique: {names}")
        corr = [c.name for c in self.correlations]
        if len(set(corr)) != len(corr):
            raise ValueError(f"correlation names must be unique: {corr}")
        by_name = {r.name: r for r in self.rules}
        chained = {c.name: c for c in self.correlations}
        for c in self.correlations:
            for ref in c.rules:
                if ref in by_name:
                    continue
                target = chained.get(ref)
                if target is None or c.type not in TEMPORAL:
                    raise ValueError(
                        f"correlation {c.name}: rules: no base rule named {ref!r}; "
                        f"base rules: {', '.join(by_name) or '(none)'}"
                        + (
                            "; a temporal correlation may also name a count correlation"
                            if target is None
                            else "; only temporal correlations chain other correlations"
                        )
                    )
                if target.type in TEMPORAL or target.op not in ("gt", "gte"):
                    raise ValueError(
                        f"correlation {c.name}: step {ref!r} must be an event_count or "
                        "value_count correlation with a gt/gte condition (decided as its "
                        "events arrive)"
                    )
                if target.group_by != c.group_by:
                    raise ValueError(
                        f"correlation {c.name}: step {ref!r} is grouped by "
                        f"{list(target.group_by)}, this correlation by {list(c.group_by)}: "
                        "chained correlations need the same group-by"
                    )
            for ref in c.rules:
                if ref not in by_name:
                    continue
                model = KIND_MODELS[by_name[ref].kind]
                for f in (*c.group_by, *([c.counted_field] if c.counted_field else [])):
                    if f not in model.model_fields:
                        raise ValueError(
                            f"correlation {c.name}: group-by/field {f!r} is not a field of "
                            f"{by_name[ref].kind} (rule {ref})"
                        )
        if parse_seconds(self.quiet_period) < self.grace_seconds:
            raise ValueError("quiet_period must be at least grace_seconds")
        return self

    @property
    def quiet_ms(self) -> int:
        return int(parse_seconds(self.quiet_period) * 1000)

    def threshold(
        self, correlation: Correlation, tenant: str | None, first_group_value: str = ""
    ) -> int | None:
        """The threshold for a group (None: the rule is disabled for it). Tenant overrides
        apply to correlations grouped by tenant; others see only overrides without a
        tenant match."""
        value = correlation.thresholds_by_group.get(first_group_value, correlation.base_threshold)
        for o in self.overrides:
            if o.match.tenant is not None and tenant is None:
                continue
            if o.match.tenant is not None and o.match.tenant != tenant:
                continue
            if correlation.name in o.disable or correlation.alertname in o.disable:
                return None
            for key in (correlation.name, correlation.alertname):
                if key in o.thresholds:
                    value = o.thresholds[key]
        return value
