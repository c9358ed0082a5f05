"""The CA tool: idempotence, file modes, names, revocation, the generated ACL, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from chargelift_certs import pki
from chargelift_certs.main import main

SERVICES_ACL = pki.SERVICES_ACL


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    pki.create_ca(tmp_path)
    pki.issue_server(tmp_path)
    return tmp_path


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_is_never_overwritten_without_force(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    first = (tmp_path / "ca.crt").read_bytes()
    pki.create_ca(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == first
    pki.create_ca(tmp_path, force=True)
    assert (tmp_path / "ca.crt").read_bytes() != first


def test_private_keys_are_0600(ca: Path) -> None:
    pki.issue_client(ca, "amtron-1")
    for key in (ca / "ca.key", ca / "broker.key", ca / "clients" / "amtron-1.key"):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_broker_certificate_names(ca: Path) -> None:
    pki.issue_server(ca, sans=["broker.example", "10.1.2.3"], force=True)
    san = load(ca / "broker.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    dns = san.value.get_values_for_type(x509.DNSName)
    ips = [str(i) for i in san.value.get_values_for_type(x509.IPAddress)]
    assert {"localhost", "mosquitto", "broker.example"} <= set(dns)
    assert {"127.0.0.1", "10.1.2.3"} <= set(ips)


def test_client_certificate_carries_identity_and_role(ca: Path) -> None:
    cert = load(pki.issue_client(ca, "ingest", role="service"))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ingest"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        "service"
    )


def test_the_broker_chain_verifies_with_the_ca(ca: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(ca / "ca.crt"))
    assert ctx.get_ca_certs()[0]["subject"]  # the CA parses as a trust anchor
    load(ca / "broker.crt").verify_directly_issued_by(load(ca / "ca.crt"))


@pytest.mark.parametrize("identity", ["ingest", "api", "poller", "monitor"])
def test_service_names_are_reserved(ca: Path, identity: str) -> None:
    with pytest.raises(pki.CertError, match="reserved"):
        pki.issue_client(ca, identity, role="charger")


@pytest.mark.parametrize("identity", ["Amtron", "a/b", "", "x" * 65, "a b"])
def test_invalid_identities_are_refused(ca: Path, identity: str) -> None:
    with pytest.raises(pki.CertError, match="invalid identity"):
        pki.issue_client(ca, identity)


def test_a_charger_cannot_be_a_service(ca: Path) -> None:
    with pytest.raises(pki.CertError, match="not a service"):
        pki.issue_client(ca, "amtron-1", role="service")


def test_reissue_needs_force(ca: Path) -> None:
    pki.issue_client(ca, "amtron-1")
    with pytest.raises(pki.CertError, match="--force"):
        pki.issue_client(ca, "amtron-1")


#: What a charger's own identity may do: its fields and availability, read its commands,
#: write their results (never publish a command).
CHARGER_RULES = (
    "topic readwrite chargers/{c}/+\n"
    "topic read chargers/{c}/set/+\n"
    "topic write chargers/{c}/result/+"
)


def test_acl_lists_valid_chargers_and_services_only(ca: Path) -> None:
    pki.issue_client(ca, "amtron-1")
    pki.issue_client(ca, "amtron-2")
    pki.issue_client(ca, "ingest", role="service")
    acl = pki.render_acl(ca, SERVICES_ACL)
    assert "pattern" not in acl.replace("No `pattern` lines", "")
    assert f"user amtron-1\n{CHARGER_RULES.format(c='amtron-1')}\n\n" in acl
    assert "user ingest\ntopic read chargers/#" in acl
    assert "topic readwrite chargers/ingest" not in acl


def test_the_acl_is_refused_without_the_services_rules(
    ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The services' rules (package data, or CHARGELIFT_SERVICES_ACL): without them no ACL
    # may be written that differs from them.
    pki.issue_client(ca, "amtron-1")
    with pytest.raises(pki.CertError, match="CHARGELIFT_SERVICES_ACL"):
        pki.render_acl(ca, tmp_path / "missing.services")
    monkeypatch.setenv("CHARGELIFT_SERVICES_ACL", str(SERVICES_ACL))
    assert "user poller\n" in pki.render_acl(ca)
    monkeypatch.setenv("CHARGELIFT_SERVICES_ACL", str(tmp_path / "missing.services"))
    with pytest.raises(pki.CertError, match="missing"):
        pki.write_acl(ca)


def test_revoke_keeps_earlier_entries_and_updates_the_acl(ca: Path) -> None:
    s1 = load(pki.issue_client(ca, "amtron-1")).serial_number
    s2 = load(pki.issue_client(ca, "amtron-2")).serial_number
    assert pki.revoke(ca, "amtron-1") == s1
    assert pki.revoke(ca, "amtron-2") == s2
    crl = x509.load_pem_x509_crl((ca / "crl.pem").read_bytes())
    assert {e.serial_number for e in crl} == {s1, s2}
    assert crl.is_signature_valid(load(ca / "ca.crt").public_key())  # type: ignore[arg-type]
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number >= 3
    acl = (ca / "mosquitto.acl").read_text()
    assert "amtron-1" not in acl
    assert "amtron-2" not in acl
    assert not (ca / "clients" / "amtron-1.crt").exists()
    assert list((ca / "clients" / "revoked").glob("amtron-1-*.crt"))


def test_rotate_issues_a_new_serial_and_revokes_the_old(ca: Path) -> None:
    old = load(pki.issue_client(ca, "amtron-1")).serial_number
    new = load(pki.rotate(ca, "amtron-1")).serial_number
    assert new != old
    assert old in pki.revoked_serials(ca)
    assert "user amtron-1" in (ca / "mosquitto.acl").read_text()


def test_list_shows_valid_expired_and_revoked(ca: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    pki.issue_client(ca, "amtron-1")
    pki.issue_client(
        ca, "old-one", not_before=now - dt.timedelta(days=9), not_after=now - dt.timedelta(days=1)
    )
    pki.issue_client(ca, "gone")
    pki.revoke(ca, "gone")
    status = {c.identity: c.status for c in pki.list_certs(ca)}
    assert status["amtron-1"] == "valid"
    assert status["old-one"] == "expired"
    assert status["gone"] == "revoked"
    assert status["ca"] == "valid"
    assert status["broker"] == "valid"
    assert "old-one" not in (ca / "mosquitto.acl").read_text()


def test_expiry_command_exit_codes(ca: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki.issue_client(ca, "amtron-1", days=10)
    assert main(["--dir", str(ca), "expiry", "--warn-days", "5"]) == 0
    assert main(["--dir", str(ca), "expiry", "--warn-days", "30"]) == 1
    assert "amtron-1" in capsys.readouterr().out


def test_cli_errors_are_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--dir", str(tmp_path), "client", "amtron-1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no CA")
    assert "Traceback" not in err


def test_dev_set_is_complete_and_idempotent(tmp_path: Path) -> None:
    assert main(["--dir", str(tmp_path), "dev-set"]) == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.crt")}
    assert main(["--dir", str(tmp_path), "dev-set"]) == 0
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.crt")} == before
    for name in ("ingest", "api", "monitor", "amtron-1", "amtron-2", "amtron-3"):
        assert (tmp_path / "clients" / f"{name}.key").exists()
    assert (tmp_path / "crl.pem").exists()
    assert (tmp_path / "mosquitto.acl").exists()


# --- edge identities ------------------------------------------------------------------


def test_edge_certificate_lists_its_chargers_as_uri_sans(ca: Path) -> None:
    cert = load(pki.issue_client(ca, "site-1", role="edge", chargers=["amtron-1", "amtron-2"]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "site-1"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        "edge"
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:chargelift:charger:amtron-1",
        "urn:chargelift:charger:amtron-2",
    ]


def test_edge_acl_lets_it_write_its_chargers_and_its_edge_topics_only(ca: Path) -> None:
    pki.issue_client(ca, "ingest", role="service")
    pki.issue_client(ca, "amtron-9")
    pki.issue_client(ca, "site-1", role="edge", chargers=["amtron-1", "amtron-2"])
    acl = pki.render_acl(ca, SERVICES_ACL)
    block = acl.split("user site-1\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines() == [
        # the same rights a charger has on its own topics, per listed charger
        *CHARGER_RULES.format(c="amtron-1").splitlines(),
        *CHARGER_RULES.format(c="amtron-2").splitlines(),
        "topic readwrite edges/site-1/#",
    ]
    assert "chargers/amtron-9/" not in block
    assert f"user amtron-9\n{CHARGER_RULES.format(c='amtron-9')}" in acl
    # ingest and monitor read the edges' availability and charger lists
    assert "user ingest\ntopic read chargers/#\ntopic read edges/#" in acl


@pytest.mark.parametrize(
    ("identity", "chargers", "error"),
    [
        ("site-1", [], "at least one --charger"),
        ("site-1", ["Amtron-1"], "invalid charger id"),
        ("site-1", ["a/b"], "invalid charger id"),
        ("site-1", ["a+"], "invalid charger id"),
        ("site-1", ["x" * 65], "invalid charger id"),
        ("site-1", ["ingest"], "reserved for a service"),
        ("ingest", ["amtron-1"], "reserved for a service"),
        ("monitor", ["amtron-1"], "reserved for a service"),
        ("Site", ["amtron-1"], "invalid identity"),
    ],
)
def test_edge_names_are_checked(ca: Path, identity: str, chargers: list[str], error: str) -> None:
    with pytest.raises(pki.CertError, match=error):
        pki.issue_client(ca, identity, role="edge", chargers=chargers)
    assert not (ca / "clients" / f"{identity}.crt").exists()


def test_only_an_edge_or_a_controller_lists_chargers(ca: Path) -> None:
    with pytest.raises(pki.CertError, match="only an edge, controller or homeassistant"):
        pki.issue_client(ca, "amtron-1", role="charger", chargers=["amtron-2"])


def test_an_edge_cannot_take_an_issued_chargers_name(ca: Path) -> None:
    pki.issue_client(ca, "amtron-1")
    with pytest.raises(pki.CertError, match="exists"):
        pki.issue_client(ca, "amtron-1", role="edge", chargers=["amtron-2"])


def test_duplicate_chargers_collapse(ca: Path) -> None:
    pki.issue_client(ca, "site-1", role="edge", chargers=["amtron-1", "amtron-1", "amtron-2"])
    (info,) = [c for c in pki.list_certs(ca) if c.identity == "site-1"]
    assert info.chargers == ("amtron-1", "amtron-2")


def test_rotate_keeps_the_edge_role_and_its_chargers(ca: Path) -> None:
    old = load(pki.issue_client(ca, "site-1", role="edge", chargers=["amtron-1", "amtron-2"]))
    new = load(pki.rotate(ca, "site-1"))
    assert new.serial_number != old.serial_number
    assert old.serial_number in pki.revoked_serials(ca)
    assert new.subject == old.subject
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName) == (
        old.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    )
    acl = (ca / "mosquitto.acl").read_text()
    assert acl.count("user site-1\n") == 1
    assert "topic readwrite chargers/amtron-2/+" in acl


def test_a_revoked_edge_leaves_the_acl(ca: Path) -> None:
    pki.issue_client(ca, "site-1", role="edge", chargers=["amtron-1"])
    pki.revoke(ca, "site-1")
    acl = (ca / "mosquitto.acl").read_text()
    assert "site-1" not in acl
    assert "chargers/amtron-1/" not in acl


def test_cli_issues_and_lists_an_edge(ca: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--dir", str(ca), "client", "site-1", "--role", "edge"]
    assert main([*argv, "--charger", "amtron-1", "--charger", "amtron-2"]) == 0
    capsys.readouterr()
    assert main(["--dir", str(ca), "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("site-1"))
    assert "edge (2 chargers)" in row
    assert main(["--dir", str(ca), "list", "--json"]) == 0
    (edge,) = [c for c in json.loads(capsys.readouterr().out) if c["identity"] == "site-1"]
    assert edge["role"] == "edge"
    assert edge["chargers"] == ["amtron-1", "amtron-2"]
    assert main([*argv[:3], "site-2", "--role", "edge"]) == 2
    assert "at least one --charger" in capsys.readouterr().err


def test_reissue_with_force_revokes_and_lists_the_replaced_certificate(ca: Path) -> None:
    old = load(pki.issue_client(ca, "amtron-1")).serial_number
    new = load(pki.issue_client(ca, "amtron-1", force=True)).serial_number
    assert new != old
    assert old in pki.revoked_serials(ca)
    mine = {c.serial: c.status for c in pki.list_certs(ca) if c.identity == "amtron-1"}
    assert mine == {old: "revoked", new: "valid"}
    assert "user amtron-1" in (ca / "mosquitto.acl").read_text()


def test_crl_is_resigned_only_when_asked_or_close_to_expiry(
    ca: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = pki.crl_next_update(ca)
    assert first is not None
    assert not pki.refresh_crl(ca, within_days=pki.CRL_RENEW_DAYS)
    assert pki.crl_next_update(ca) == first
    assert main(["--dir", str(ca), "crl", "--if-within", "90"]) == 0
    assert "kept" in capsys.readouterr().out

    # 300 days later, 65 are left: dev-set (run at every `make dev`) re-signs it.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=300)
    monkeypatch.setattr(pki, "_now", lambda: later)
    pki.dev_set(ca)
    renewed = pki.crl_next_update(ca)
    assert renewed is not None
    assert renewed - later > dt.timedelta(days=360)
    assert main(["--dir", str(ca), "crl"]) == 0
    assert "re-signed" in capsys.readouterr().out


def test_reading_roles_get_their_rules_and_nothing_more(ca: Path) -> None:
    # One connection per identity (the broker binds the client id to it): a second
    # ingest of a $share group and a second dashboard each get an identity of a role.
    pki.issue_client(ca, "ingest", role="service")
    pki.issue_client(ca, "monitor", role="service")
    pki.issue_client(ca, "ingest-2", role="ingest")
    pki.issue_client(ca, "grafana", role="monitor")
    acl = pki.render_acl(ca, SERVICES_ACL)
    ingest = "topic read chargers/#\ntopic read edges/#\n"
    assert f"user ingest\n{ingest}" in acl
    assert f"user ingest-2\n{ingest}" in acl
    assert f"user monitor\n{ingest}topic read $SYS/#\n" in acl
    assert f"user grafana\n{ingest}topic read $SYS/#\n" in acl
    assert "write" not in acl.split("user ingest-2\n", 1)[1].split("\n\n", 1)[0]
    # rotate keeps the role; a reading role cannot take a service's or a charger's name
    pki.rotate(ca, "ingest-2")
    assert f"user ingest-2\n{ingest}" in pki.render_acl(ca, SERVICES_ACL)
    with pytest.raises(pki.CertError, match="reserved"):
        pki.issue_client(ca, "api", role="ingest")
    assert main(["--dir", str(ca), "client", "ingest-3", "--role", "ingest"]) == 0


def test_a_controller_commands_the_listed_chargers_or_all(ca: Path) -> None:
    pki.issue_client(ca, "evcc", role="controller", chargers=["amtron-1"])
    pki.issue_client(ca, "loadmgr", role="controller")
    pki.issue_client(ca, "api", role="service")
    acl = pki.render_acl(ca, SERVICES_ACL)
    block = acl.split("user evcc\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines() == [
        "topic write chargers/amtron-1/set/+",
        "topic read chargers/amtron-1/#",
    ]
    every = ["topic write chargers/+/set/+", "topic read chargers/+/#"]
    assert acl.split("user loadmgr\n", 1)[1].split("\n\n", 1)[0].splitlines() == every
    # the API publishes the commands its control tokens send: a controller of all
    assert acl.split("user api\n", 1)[1].split("\n\n", 1)[0].splitlines() == every
    # rotate keeps the list
    pki.rotate(ca, "evcc")
    (info,) = [c for c in pki.list_certs(ca) if c.identity == "evcc" and not c.revoked]
    assert (info.role, info.chargers) == ("controller", ("amtron-1",))


@pytest.mark.parametrize("identity", ["ingest", "api", "monitor", "poller"])
def test_a_controller_cannot_take_a_service_name(ca: Path, identity: str) -> None:
    with pytest.raises(pki.CertError, match="reserved"):
        pki.issue_client(ca, identity, role="controller")


def test_cli_lists_a_controller(ca: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(ca), "client", "evcc", "--role", "controller"]) == 0
    capsys.readouterr()
    assert main(["--dir", str(ca), "list"]) == 0
    assert "controller (all)" in capsys.readouterr().out
