"""The forwarder's firing set with explicit clocks: ends ahead, re-sends, stale bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.alerts import Alert, AlertData, Annotations, Status
from streams.alerting import AlertSpec
from streams.forward import AlertState

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SPEC = AlertSpec("ThroughputDrop", "high", {"tenant_id": "acme"}, Annotations(summary="s"))


def alert(status: Status, at: datetime) -> Alert:
    data = AlertData(
        fingerprint=SPEC.fingerprint, status=status, alertname=SPEC.alertname,
        severity=SPEC.severity, labels=SPEC.labels, routing=SPEC.routing,
        annotations=SPEC.annotations, value=1, threshold=2, starts_at=T0,
        ends_at=at if status == "resolved" else None,
    )  # fmt: skip
    return Alert.build(data, at)


def ends(payload: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(payload["endsAt"]).replace("Z", "+00:00"))


def test_firing_alerts_end_ahead_are_resent_and_stop_when_no_longer_asserted() -> None:
    state = AlertState(stale_after_s=900, resend_interval_s=60, public_url="http://v")
    [posted] = state.take([alert("firing", T0)], now_mono=0, now_wall=T0)
    assert ends(posted) == T0 + timedelta(seconds=900)
    assert posted["labels"]["family"] == "throughput"  # type: ignore[index]
    assert state.due(30, T0 + timedelta(seconds=30)) == ([], 0)  # not yet
    resent, stale = state.due(60, T0 + timedelta(seconds=60))
    assert stale == 0 and len(resent) == 1
    assert ends(resent[0]) == T0 + timedelta(seconds=900)  # the end does not creep on
    # the detector re-asserts it (a reminder): the end moves with it
    state.take([alert("firing", T0 + timedelta(seconds=300))], 300, T0 + timedelta(seconds=300))
    resent, _ = state.due(400, T0 + timedelta(seconds=400))
    assert ends(resent[0]) == T0 + timedelta(seconds=1200)
    # no assertion for the stale bound: dropped, and it ends in Alertmanager by itself
    resent, stale = state.due(1200, T0 + timedelta(seconds=1200))
    assert (resent, stale) == ([], 1)
    assert not state.firing


def test_a_resolution_is_sent_with_its_time_and_ends_the_re_sending() -> None:
    state = AlertState(stale_after_s=900, resend_interval_s=60, public_url="http://v")
    state.take([alert("firing", T0)], 0, T0)
    [posted] = state.take([alert("resolved", T0 + timedelta(seconds=90))], 90, T0)
    assert ends(posted) == T0 + timedelta(seconds=90)
    assert state.due(200, T0 + timedelta(seconds=200)) == ([], 0)
    # firing then resolved in one batch: one object, the resolution
    state2 = AlertState(900, 60, "http://v")
    out = state2.take([alert("firing", T0), alert("resolved", T0 + timedelta(seconds=5))], 0, T0)
    assert len(out) == 1 and ends(out[0]) == T0 + timedelta(seconds=5)
