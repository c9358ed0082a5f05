"""Who a certificate is: the facts about identities that certificates carry (no I/O).

An edge certificate (one poller's identity for all the chargers of its site) names each
charger it may write for as a URI subject alternative name ``urn:chargelift:charger:<id>``.
``chargelift-certs`` writes them; the broker's ACL, the poller's start-up check and
ingest (which lets an edge affect only these chargers) read them.
"""

from __future__ import annotations

from collections.abc import Iterable

#: How an edge certificate names a charger it may write for (a URI SAN).
CHARGER_URN = "urn:chargelift:charger:"


def charger_urn(charger: str) -> str:
    return CHARGER_URN + charger


def listed_chargers(uris: Iterable[str]) -> tuple[str, ...]:
    """The chargers named by a certificate's URI SANs, in their order (other URIs ignored)."""
    return tuple(u.removeprefix(CHARGER_URN) for u in uris if u.startswith(CHARGER_URN))


def chargers_of_uris(uris: Iterable[str]) -> frozenset[str]:
    """The chargers named by a certificate's URI SANs (other URIs ignored)."""
    return frozenset(listed_chargers(uris))
