"""Settings: at least one listener; TLS certificate and key together; the id tag list."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from chargelift_ocpp.chargepoint import TokenBucket
from chargelift_ocpp.config import Settings


def base(**kw: object) -> Settings:
    return Settings(charge_points=Path("cp.toml"), state_dir=Path("state"), **kw)  # type: ignore[arg-type]


def test_no_listener_is_an_error() -> None:
    with pytest.raises(ValidationError, match="no listener"):
        base()
    with pytest.raises(ValidationError, match="go together"):
        base(tls_cert=Path("a.crt"))
    assert base(allow_plain=True).plain_host == "127.0.0.1"
    assert base(tls_cert=Path("a.crt"), tls_key=Path("a.key")).tls


def test_id_tags() -> None:
    s = base(allow_plain=True, id_tags=" card-1, ,card-2")
    assert s.accepted_id_tags == frozenset({"card-1", "card-2"})
    assert base(allow_plain=True).accepted_id_tags == frozenset()


def test_the_token_bucket_delays_beyond_the_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay() == pytest.approx(0.5)
    now[0] = 10.0
    assert bucket.delay() == 0.0


def test_the_gateway_without_settings_exits_2_naming_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from chargelift_ocpp.main import main

    for name in ("OCPP_CHARGE_POINTS", "OCPP_STATE_DIR", "OCPP_TLS_CERT", "OCPP_ALLOW_PLAIN"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "OCPP_CHARGE_POINTS" in err
    assert "OCPP_STATE_DIR" in err
