"""The rules file's ``canary:`` section: what a service's canary stage declares.

```yaml
canary:
  services:
    web:
      weight: 0.1          # the canary's declared share of the service's requests
      slo_ms: {p95: 500}   # absolute thresholds on the canary's own quantiles
```

A declared weight adds the ``throughput_share`` metric (the canary receiving far more or
far less traffic than the rollout said is a failure of the rollout); each ``slo_ms``
entry adds a critical ``slo_<q>`` metric. Services not named are judged on latency and
errors only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class CanaryService(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    weight: Annotated[float, Field(gt=0, lt=1)] | None = None
    slo_ms: dict[Literal["p50", "p95", "p99"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )


class CanaryRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    services: dict[str, CanaryService] = Field(default_factory=dict)
