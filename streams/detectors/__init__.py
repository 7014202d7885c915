"""Detectors: each in its own package with a pure core (state and a batch of events in,
rows and alert transitions out), its rules schema and a thin adapter that the pipeline
calls through one seam (:class:`streams.pipeline.Detector`).

* ``latency``: event-time windows, sketches, SLO rules and error budgets.
* ``pii``: the PII guard (a named pre-stage: everything after it sees redacted events)
  and its alerts.
"""
