"""``chargelift-ocpp register``: the registry gets the hash only, the user gets the setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargelift_ocpp.main import main
from chargelift_ocpp.registry import read_registry, verify_password


def test_register_profile_2_prints_the_password_once_and_stores_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "cp.toml"
    argv = [
        "register",
        "garage-1",
        "--registry",
        str(registry),
        "--url",
        "wss://gw.example:9000/ocpp",
    ]
    assert main([*argv, "--charger", "garage-1-1", "--ca-file", "/etc/ca.crt"]) == 0
    out = capsys.readouterr().out
    password = next(
        line.split(":", 1)[1].strip() for line in out.splitlines() if "Password" in line
    )
    assert len(password) >= 32
    assert "wss://gw.example:9000/ocpp/garage-1" in out
    assert "/etc/ca.crt" in out
    assert password not in registry.read_text()
    entry = read_registry(registry)["garage-1"]
    assert (entry.profile, entry.chargers) == (2, ("garage-1-1",))
    assert entry.password_hash is not None
    assert verify_password(password.encode(), entry.password_hash)
    # registered already: refused without --force; --force gives a new password
    assert main(argv) == 2
    assert "registered already" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    new_hash = read_registry(registry)["garage-1"].password_hash
    assert new_hash is not None
    assert not verify_password(password.encode(), new_hash)


def test_register_profile_3_issues_a_certificate_of_the_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cryptography import x509

    from chargelift_certs import pki

    certs = tmp_path / "certs"
    pki.create_ca(certs)
    registry = tmp_path / "cp.toml"
    code = main(
        [
            "register",
            "garage-3",
            "--profile",
            "3",
            "--registry",
            str(registry),
            "--certs-dir",
            str(certs),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    crt = certs / "clients" / "garage-3.crt"
    assert str(crt) in out
    assert "Password" not in out
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "garage-3"
    assert read_registry(registry)["garage-3"].profile == 3


def test_register_refuses_a_bad_id_and_profile_3_without_the_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "cp.toml"
    assert main(["register", "Bad Id", "--registry", str(registry)]) == 2
    assert main(["register", "cp", "--profile", "3", "--registry", str(registry)]) == 2
    err = capsys.readouterr().err
    assert "invalid charge point id" in err
    assert "--certs-dir" in err
    assert not registry.exists()


def test_register_profile_1_points_at_the_plain_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["register", "lan-1", "--profile", "1", "--registry", str(tmp_path / "r.toml")]) == 0
    )
    out = capsys.readouterr().out
    assert "ws://<gateway LAN address>:9080/ocpp" in out
    assert "CA certificate" not in out


def test_register_takes_the_password_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry, secret = tmp_path / "cp.toml", tmp_path / "pw"
    argv = ["register", "garage-2", "--registry", str(registry), "--password-file", str(secret)]
    secret.write_text("short\n")
    assert main(argv) == 2
    assert "at least 16 bytes" in capsys.readouterr().err
    assert not registry.exists() or "garage-2" not in read_registry(registry)
    secret.write_text("a-provisioned-password-0123\nignored\n")
    assert main(argv) == 0
    entry = read_registry(registry)["garage-2"]
    assert entry.password_hash is not None
    assert verify_password(b"a-provisioned-password-0123", entry.password_hash)
    certs = tmp_path / "certs"
    assert (
        main([*argv[:1], "garage-3", *argv[2:], "--profile", "3", "--certs-dir", str(certs)]) == 2
    )
    assert "no password" in capsys.readouterr().err
