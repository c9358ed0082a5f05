"""The registry file and the passwords: hashed with a salt, compared in constant time,
never stored in clear; a bad file is refused at start and ignored on reload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chargelift_ocpp.registry import (
    ChargePointEntry,
    Registry,
    RegistryError,
    hash_password,
    new_password,
    parse_registry,
    read_registry,
    valid_charge_point_id,
    verify_password,
    write_registry,
)

PW = "a-password-of-24-bytes!!"


def test_a_new_password_has_24_random_bytes() -> None:
    a, b = new_password(), new_password()
    assert a != b
    assert len(a) == 32  # 24 bytes, URL-safe base64


def test_hash_and_verify() -> None:
    stored = hash_password(PW)
    assert PW not in stored
    assert stored.startswith("scrypt$")
    assert hash_password(PW) != stored  # a fresh salt each time
    assert verify_password(PW.encode(), stored)
    assert not verify_password(PW.encode() + b"x", stored)
    assert not verify_password(b"short", stored)
    assert not verify_password(b"x" * 10_000, stored)  # refused before any hashing


def test_a_short_password_is_refused() -> None:
    with pytest.raises(RegistryError, match="16 bytes"):
        hash_password("fifteen-bytes!!")


def test_write_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "cp.toml"
    entries = [
        ChargePointEntry("cp-2", 2, hash_password(PW), ("cp-2-1", "cp-2-2")),
        ChargePointEntry("cp-3", 3),
    ]
    write_registry(path, entries)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert PW not in path.read_text()
    assert read_registry(path) == {e.id: e for e in entries}
    assert "scrypt" not in repr(entries[0])  # never a hash in a log line


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[charge_points.cp]\nprofile = 4\n", "1, 2 or 3"),
        ("[charge_points.cp]\nprofile = 2\n", "needs a password hash"),
        ('[charge_points.cp]\nprofile = 3\npassword = "x"\n', "no password"),
        ('[charge_points.cp]\nprofile = 2\npassword = "plain-text-password"\n', "scrypt"),
        (
            '[charge_points.cp]\nprofile = 2\npassword = "scrypt$1073741824$8$1$'
            'AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA=="\n',
            "out of range",
        ),
        ("[charge_points.CP]\nprofile = 3\n", "invalid charge point id"),
        ('[charge_points.cp]\nprofile = 3\nchargers = ["Bad Id"]\n', "charger ids"),
        ("[charge_points.cp]\nprofile = 3\ncolour = 1\n", "unknown keys"),
        ("[other]\n", "unknown top-level"),
        ("not toml [", "not valid TOML"),
        ("[charge_points.cp]\nprofile = true\n", "1, 2 or 3"),
    ],
)
def test_a_bad_registry_is_refused_with_where(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_registry(text)


def test_reload_on_change_and_a_bad_file_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "cp.toml"
    write_registry(path, [ChargePointEntry("cp-a", 3)])
    registry = Registry(path)
    assert registry.get("cp-a") is not None
    write_registry(path, [ChargePointEntry("cp-b", 3)])
    assert registry.get("cp-a") is None
    assert registry.get("cp-b") is not None
    path.write_text("broken [")
    assert registry.get("cp-b") is not None
    assert registry.failed_reloads == 1
    assert registry.get("cp-b") is not None
    assert registry.failed_reloads == 1  # logged once per change


def test_a_bad_file_at_start_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cp.toml"
    path.write_text("broken [")
    with pytest.raises(RegistryError, match=r"cp\.toml"):
        Registry(path)


def test_a_missing_file_is_an_empty_registry(tmp_path: Path) -> None:
    assert len(Registry(tmp_path / "none.toml")) == 0


@pytest.mark.parametrize("cp_id", ["garage__2", "a" * 49, "Garage", "", "cp/1"])
def test_a_charge_point_id_the_mapper_cannot_name_chargers_after_is_refused(cp_id: str) -> None:
    # "garage__2" is a valid charger id but the charger id of garage's connector 2: a
    # charge point of that name would publish as another's connector.
    assert not valid_charge_point_id(cp_id)
    with pytest.raises(RegistryError, match="invalid charge point id"):
        parse_registry(f'[charge_points."{cp_id}"]\nprofile = 3\n')


def test_a_charge_point_id_the_mapper_accepts_is_valid() -> None:
    assert valid_charge_point_id("garage-1_a")
    assert valid_charge_point_id("a" * 48)
