"""The contract: pydantic v2 models of events, alerts and stored rows."""
