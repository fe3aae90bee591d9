"""When a training loop stops for a signal: SIGINT, SIGTERM or SIGUSR1 is deferred to the
end of the step in progress (:func:`~xpt.toolkit.interrupts.deferred_interrupts`); with
several processes the ranks agree before every step (one all-reduce) on whether any was
signalled or ran out of data, so they stop, or end the epoch, at the same step."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from xpt.toolkit.interrupts import StopRequest, deferred_interrupts
from xpt.train.distributed import DistEnv


class StopSignals:
    """This process's stop request and, with several processes, the ranks' agreement."""

    def __init__(self, env: DistEnv, request: StopRequest):
        self.env = env
        self.request = request
        self.agreed = 0  # several processes: the signal every rank agreed to stop on

    @property
    def signum(self) -> int:
        """The signal the run stops on (0: none): this process's, or the ranks' agreement."""
        return self.agreed if self.env.active else (self.request.signum or 0)

    def leave_before_step(self, out_of_data: bool) -> bool:
        """Whether to leave the epoch before the next step: no batch left (on any rank), or
        a signal (a signal while the batch was read leaves it for resume)."""
        if self.env.active:  # stop or end the epoch together, at the same step
            self.agreed, ran_out = self.env.all_max([self.request.signum or 0, out_of_data])
            return bool(self.agreed or ran_out)
        return out_of_data or bool(self.request)

    def leave_after_step(self) -> bool:
        """One process: stop right after the step a signal came in (several processes
        agree first, before the next step)."""
        return bool(self.request) and not self.env.active


@contextlib.contextmanager
def stop_signals(env: DistEnv) -> Iterator[StopSignals]:
    """Defer the stop signals for the body (a second one still stops at once, raising
    :class:`~xpt.toolkit.interrupts.Interrupted`)."""
    with deferred_interrupts() as request:
        yield StopSignals(env, request)
