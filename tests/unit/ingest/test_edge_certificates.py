"""Ingest reads which chargers an edge may affect from the edge's own certificate."""

from __future__ import annotations

from pathlib import Path

from chargelift_certs import pki
from chargelift_ingest.edges import EdgeCertificates


def test_the_certificate_names_the_chargers_and_a_reissue_is_seen(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    pki.issue_client(tmp_path, "site-1", role="edge", chargers=["a-1", "b_2"])
    edges = EdgeCertificates(tmp_path / "clients")
    assert edges.chargers("site-1") == {"a-1", "b_2"}
    pki.issue_client(tmp_path, "site-1", role="edge", chargers=["a-1"], force=True)
    assert edges.chargers("site-1") == {"a-1"}


def test_no_edge_certificate_means_no_charger(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    pki.issue_client(tmp_path, "amtron-1", role="charger")  # not an edge certificate
    pki.issue_client(tmp_path, "site-2", role="edge", chargers=["a-1"])
    pki.revoke(tmp_path, "site-2")  # moved aside to clients/revoked/
    (tmp_path / "clients" / "junk.crt").write_text("not a certificate")
    edges = EdgeCertificates(tmp_path / "clients")
    assert edges.chargers("amtron-1") == frozenset()
    assert edges.chargers("site-2") == frozenset()
    assert edges.chargers("junk") == frozenset()
    assert edges.chargers("never-issued") == frozenset()
