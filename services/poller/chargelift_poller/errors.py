"""The exception tree of the charger boundary, translated once in the driver.

::

    ChargerError                      anything that went wrong talking to a charger
    ├── TransientError                retried with bounded backoff
    │   ├── ChargerTimeoutError       no answer in time
    │   ├── ChargerConnectionError    refused, reset, closed mid-response
    │   ├── ChargerHttpError          5xx or another unexpected status
    │   ├── ChargerDeviceError        the device answered with an error of its protocol
    │   │                             (a Modbus exception code: busy, device failure...)
    │   ├── ChargerProtocolError      malformed / truncated / wrong-typed / implausible payload
    │   └── DriverFaultError          the driver raised something outside this tree (a
    │                                 bug met by an odd answer; the coordinator translates it)
    └── PermanentError                taken out of fast rotation, logged loudly
        ├── AuthError                 the charger refused the PIN (401/403)
        └── ConfigError               wrong address, unsupported device, bad options
                                      (also Modbus exceptions 1/2: no such register)

Drivers raise only these (``raise ... from None``: the underlying httpx exception
carries the request URL, and MHCP puts the PIN in the query string). Messages name the
charger and never contain a secret. ``kind`` is the metrics label of the class.
"""


class ChargerError(Exception):
    """Base of every error raised while reading a charger."""

    kind = "error"

    def __init__(self, charger: str, message: str) -> None:
        super().__init__(f"charger {charger}: {message}")
        self.charger = charger


class TransientError(ChargerError):
    """Worth retrying soon: the charger or the network may recover by itself."""

    kind = "transient"


class ChargerTimeoutError(TransientError):
    """The charger did not answer within the call's timeout."""

    kind = "timeout"


class ChargerConnectionError(TransientError):
    """The TCP connection failed, was reset or closed before a complete response."""

    kind = "connection"


class ChargerHttpError(TransientError):
    """The charger answered with a server error or an unexpected status."""

    kind = "http"


class ChargerDeviceError(TransientError):
    """The charger answered, with an error of its own protocol (a Modbus exception code)."""

    kind = "device"


class ChargerProtocolError(TransientError):
    """The response could not be understood (malformed, truncated, wrong types)."""

    kind = "protocol"


class DriverFaultError(TransientError):
    """The driver (or the mapping of its reading) raised an unexpected exception.

    Raised by the coordinator, never by a driver: one charger's odd answer that meets
    a bug must not stop the other chargers (issue 14). Retried with backoff."""

    kind = "driver_fault"


class PermanentError(ChargerError):
    """Will not go away by retrying: needs a person (PIN, address, configuration)."""

    kind = "permanent"


class AuthError(PermanentError):
    """The charger refused our credentials."""

    kind = "auth"


class ConfigError(PermanentError):
    """The configuration does not fit the device (wrong address, unknown option...)."""

    kind = "config"
