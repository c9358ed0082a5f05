"""chargelift's Home Assistant and evcc bridge: chargers/# → chargelift/ha/# + discovery."""

__version__ = "0.1.0"
