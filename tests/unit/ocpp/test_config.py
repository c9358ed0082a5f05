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
    # The gateway's own remote-start tag is accepted with the configured ones.
    assert s.accepted_id_tags == frozenset({"card-1", "card-2", "chargelift"})
    assert base(allow_plain=True).accepted_id_tags == frozenset()  # empty: any


@pytest.mark.parametrize("tag", ["chargelift", "x", "A" * 20, "app 42", "Zählerkarte"])
def test_a_remote_id_tag_of_1_to_20_printable_characters(tag: str) -> None:
    assert base(allow_plain=True, remote_id_tag=tag).remote_id_tag == tag
    assert base(allow_plain=True).remote_id_tag == "chargelift"
    assert tag in base(allow_plain=True, id_tags="card-1", remote_id_tag=tag).accepted_id_tags


@pytest.mark.parametrize("tag", ["", "A" * 21, "tab\there", "nl\n", "nul\x00", "x" * 100_000])
def test_a_remote_id_tag_that_is_no_ocpp_id_tag_is_refused(tag: str) -> None:
    with pytest.raises(ValidationError, match="1-20 printable characters"):
        base(allow_plain=True, remote_id_tag=tag)


def test_a_bad_remote_id_tag_stops_the_gateway_at_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from chargelift_ocpp.main import main

    monkeypatch.setenv("OCPP_CHARGE_POINTS", str(tmp_path / "cp.toml"))
    monkeypatch.setenv("OCPP_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("OCPP_ALLOW_PLAIN", "true")
    monkeypatch.setenv("OCPP_REMOTE_ID_TAG", "far-too-long-an-id-tag-for-ocpp")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "OCPP_REMOTE_ID_TAG" in err
    assert "far-too-long" not in err  # a value is never printed


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
