"""Reading a Prometheus text exposition in tests."""

from __future__ import annotations


def parse_metrics(text: str) -> dict[str, float]:
    """Every sample of ``text``, keyed by its name with labels as exposed
    (``api_command_publish_failures_total{reason="expired"}``)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
