"""Restart handlers: one small handler per failure, each recorded (after aiida-quantumespresso's
``process_handler``).

A :class:`RestartHandler` recognises one failure (an exception class raised by an adapter's
failure classification) and answers with a :class:`Response`: run again with preset changes
(``RETRY``), run again from the checkpoint the failed run wrote (``RESUME``: pw.x
``restart_mode='restart'``), or give up (``GIVE_UP``: the error propagates with its exit code
and remedy).  :func:`run_with_handlers` runs one attempt after another under a list of handlers,
appends a :class:`tmdflow.store.documents.Correction` for every retry or resumption, and stops
after each handler's ``max_corrections`` (then the last error propagates).  :func:`decide` is
the single decision, for a caller that acts on it elsewhere (the FireWorks edge, below).

The handler lists:

- :data:`SCF_HANDLERS` -- for a step's SCF-type pw.x run (the shared retry point of the steps):
  ``scf_not_converged`` halves ``mixing_beta`` and doubles ``electron_maxstep`` (at least 100),
  at most :data:`MAX_SCF_CORRECTIONS` times (then exit 31).  A step calls::

      result = run_with_handlers(lambda attempt: calc.scf(..., attempt.preset, ...),
                                 SCF_HANDLERS, preset, corrections)

  which does what ``tmdflow.steps.context.with_scf_corrections(run, preset, corrections)`` does
  (same changes, same Correction records, same bound).
- :data:`STEP_HANDLERS` -- for a whole step stopped by a time limit: ``max_seconds_too_short``
  gives up (pw.x stopped before its first SCF iteration: resuming under the same limit would
  stop at the same place, exit 34) and ``walltime_reached`` resumes from the checkpoint.
  ``tmdflow compute`` (:mod:`tmdflow.compute`) resumes in the same process; the FireWorks edge
  (:mod:`tmdflow.fireworks`) asks :func:`decide` and resumes in a detour Firework, because its
  launcher's time budget is spent.

Not here yet: the monolayer relaxation's cut-off ladder (``slab_pulay_stress``,
:mod:`tmdflow.relax_ladder`), whose rungs are directories of their own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Sequence, TypeVar

from .errors import MaxSecondsTooShort, ScfNotConverged, WalltimeReached
from .presets import Preset
from .store.documents import Correction

T = TypeVar("T")

#: retries of a non-converged SCF with safer mixing before exit 31
MAX_SCF_CORRECTIONS = 2
#: resumptions of a step stopped at max_seconds within one ``tmdflow compute`` (each one made
#: progress: a run that makes none stops with MaxSecondsTooShort instead)
MAX_RESUMPTIONS = 20


class Action(str, Enum):
    RETRY = "retry"  # run again with the preset changes
    RESUME = "resume"  # run again from the checkpoint the stopped run wrote
    GIVE_UP = "give_up"  # let the error propagate


@dataclass(frozen=True)
class Attempt:
    """What one run is given: its number (1 for the first), the preset (with the changes of the
    retries before it) and whether it resumes from a checkpoint."""

    number: int
    preset: Preset
    restart: bool = False


@dataclass(frozen=True)
class Response:
    action: Action
    reason: str
    changes: dict[str, Any] = field(default_factory=dict)  # preset changes (RETRY) or what resuming sets


@dataclass(frozen=True)
class RestartHandler:
    """One failure and what to do about it."""

    name: str
    handles: tuple[type[BaseException], ...]
    respond: Callable[[BaseException, Attempt], Response]
    max_corrections: int = 1

    def recognises(self, failure: BaseException) -> bool:
        return isinstance(failure, self.handles)


def _reason(failure: BaseException) -> str:
    return getattr(failure, "problem", None) or str(failure)


def safer_mixing(preset: Preset) -> dict[str, Any]:
    """The preset changes after a non-converged SCF: half the mixing, twice the iterations (>= 100)."""
    return {"mixing_beta": round(preset.mixing_beta / 2, 4), "electron_maxstep": max(preset.electron_maxstep * 2, 100)}


SCF_NOT_CONVERGED = RestartHandler(
    "scf_not_converged", (ScfNotConverged,),
    lambda failure, attempt: Response(Action.RETRY, _reason(failure), safer_mixing(attempt.preset)),
    max_corrections=MAX_SCF_CORRECTIONS)

MAX_SECONDS_TOO_SHORT = RestartHandler(
    "max_seconds_too_short", (MaxSecondsTooShort,),
    lambda failure, attempt: Response(Action.GIVE_UP, _reason(failure)), max_corrections=0)

WALLTIME_REACHED = RestartHandler(
    "walltime_reached", (WalltimeReached,),
    lambda failure, attempt: Response(Action.RESUME, _reason(failure), {"restart_mode": "restart"}),
    max_corrections=MAX_RESUMPTIONS)

SCF_HANDLERS: tuple[RestartHandler, ...] = (SCF_NOT_CONVERGED,)
#: order matters: the first handler that recognises a failure answers for it
STEP_HANDLERS: tuple[RestartHandler, ...] = (MAX_SECONDS_TOO_SHORT, WALLTIME_REACHED)


def decide(failure: BaseException, handlers: Sequence[RestartHandler],
           attempt: Attempt) -> tuple[RestartHandler, Response] | None:
    """The first handler that recognises ``failure`` and its response; None when none does."""
    for handler in handlers:
        if handler.recognises(failure):
            return handler, handler.respond(failure, attempt)
    return None


def correction(handler: RestartHandler, response: Response, attempt: Attempt) -> Correction:
    """The record of one retry or resumption (``attempt``: the number of the run that failed)."""
    return Correction(handler=handler.name, reason=response.reason, changes=dict(response.changes),
                      attempt=attempt.number)


def next_attempt(response: Response, attempt: Attempt) -> Attempt:
    """The attempt after ``attempt`` as ``response`` asks for it (RETRY or RESUME)."""
    if response.action is Action.RETRY:
        return Attempt(attempt.number + 1, dataclasses.replace(attempt.preset, **response.changes), attempt.restart)
    if response.action is Action.RESUME:
        return Attempt(attempt.number + 1, attempt.preset, restart=True)
    raise ValueError(f"no next attempt after {response.action.value}")


def run_with_handlers(run: Callable[[Attempt], T], handlers: Sequence[RestartHandler], preset: Preset,
                      corrections: list[Correction], restart: bool = False) -> T:
    """``run(attempt)`` until it succeeds, a failure no handler recognises or one it gives up on
    propagates, or a handler has acted ``max_corrections`` times (the last failure propagates).
    Every retry and resumption is appended to ``corrections``."""
    attempt = Attempt(1, preset, restart)
    used: dict[str, int] = {}
    while True:
        try:
            return run(attempt)
        except Exception as failure:
            decision = decide(failure, handlers, attempt)
            if decision is None:
                raise
            handler, response = decision
            if response.action is Action.GIVE_UP or used.get(handler.name, 0) >= handler.max_corrections:
                raise
            used[handler.name] = used.get(handler.name, 0) + 1
            corrections.append(correction(handler, response, attempt))
            attempt = next_attempt(response, attempt)
