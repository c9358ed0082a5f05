"""The one base exception of the contract.

Every way in which a topic, a payload or a value can fail the contract raises a
subclass of :class:`ContractError` (a ``ValueError``): :class:`~.topics.TopicError`,
:class:`~.envelope.EnvelopeError`, :class:`~.fields.FieldValueError`. A service that
takes input from the wire catches this one class at its boundary.
"""

from __future__ import annotations


class ContractError(ValueError):
    """Something does not follow the chargelift contract; the message says what."""
