"""The one retry policy of chargelift: bounded exponential backoff with jitter, on tenacity.

:class:`Backoff` describes the delays: the first is ``initial``, each next one ``factor``
times the one before, none above ``maximum``, each moved at random by up to ``jitter``
(a fraction of it) either way, so that a fleet that lost its broker at once does not
come back in step. tenacity computes them: :meth:`Backoff.wait` is a tenacity wait
strategy (``wait_exponential`` with that jitter on top) and :meth:`Backoff.retrying`
is tenacity's retry loop for a call that is retried until it succeeds (ingest's
database writes, :mod:`chargelift_ingest.batcher`).

Two users draw the same delays without tenacity's loop, because they are no loop
around one call (:meth:`Backoff.delays`, :meth:`Backoff.delay`):

* the MQTT client's reconnect supervisor (:mod:`chargelift_runtime.mqtt`) holds each
  connection for as long as it lasts, pauses after it is lost as after a failed
  attempt, and starts the delays over once a connection is up again: a retry loop
  ends at the first success, the supervisor never ends;
* a poller coordinator (:mod:`chargelift_poller.coordinator`) returns the delay after
  its n-th failed poll to the fixed-cadence scheduler that keeps the charger's phase,
  without jitter (``jitter=0``): nothing to wrap, only the delay to compute.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import tenacity
from tenacity.wait import wait_base

__all__ = ["Backoff"]


class _ProportionalJitter(wait_base):
    """``inner``'s delay moved at random by up to ``jitter`` of it, kept in [0, ``maximum``].

    tenacity's own jitter (``wait_exponential_jitter``) adds up to a fixed number of
    seconds; ours is a fraction of the delay, the same spread at 0.2 s as at 10 s.
    """

    def __init__(self, inner: wait_base, jitter: float, maximum: float) -> None:
        self.inner = inner
        self.jitter = jitter
        self.maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = self.inner(retry_state)
        if not self.jitter:
            return delay
        spread = delay * self.jitter
        return min(self.maximum, max(0.0, delay + random.uniform(-spread, spread)))  # noqa: S311


@dataclass(frozen=True, slots=True)
class Backoff:
    """Bounded exponential backoff with jitter (see the module docstring)."""

    initial: float = 0.5
    # Capped at 10 s: a broker back from a restart is found within seconds, and 10 s is
    # still gentle on a broker that a whole fleet reconnects to.
    maximum: float = 10.0
    factor: float = 2.0
    jitter: float = 0.2

    def wait(self) -> wait_base:
        """The delays as a tenacity wait strategy (attempt 1 waits about ``initial``)."""
        capped = tenacity.wait_exponential(
            multiplier=self.initial, max=self.maximum, exp_base=self.factor
        )
        return _ProportionalJitter(capped, self.jitter, self.maximum)

    def delay(self, attempt: int) -> float:
        """The delay after the ``attempt``-th consecutive failure (counted from 1)."""
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = max(attempt, 1)
        return self.wait()(state)

    def delays(self) -> Iterator[float]:
        """Yield the delays before each retry, forever, each at most ``maximum``."""
        wait = self.wait()
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        while True:
            yield wait(state)
            state.attempt_number += 1

    def retrying(
        self,
        retry_if: Callable[[BaseException], bool],
        before_sleep: Callable[[tenacity.RetryCallState], Any] | None = None,
    ) -> tenacity.AsyncRetrying:
        """tenacity's async loop: retry, forever, while ``retry_if(exc)`` is true.

        Only an :class:`Exception` is ever retried: cancellation and the like propagate
        at once, as an exception ``retry_if`` refuses does.
        """
        return tenacity.AsyncRetrying(
            wait=self.wait(),
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, Exception) and retry_if(exc)
            ),
            stop=tenacity.stop_never,
            before_sleep=before_sleep,
            reraise=True,
        )
