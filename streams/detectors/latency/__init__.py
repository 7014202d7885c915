"""Latency and error-rate SLOs: windows (``windows``), sketches (``sketch``), rules and
their evaluation (``slo``), the detector adapter with its recovery (``detector``)."""
