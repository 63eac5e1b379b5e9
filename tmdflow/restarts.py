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

- :func:`scf_handlers` (``calc``) -- for a step's SCF, whatever the code: ``scf_not_converged``
  retries with what the adapter calls safer (``calc.scf_retry_changes``: pw.x halves
  ``mixing_beta`` and doubles ``electron_maxstep``, at least 100; WIEN2k and Elk double their
  iterations), at most :data:`MAX_SCF_CORRECTIONS` times (then exit 31); a code with nothing
  safer gives up at once.  ``tmdflow.steps.context.run_scf(calc, job)`` runs every step's SCF
  under it.  :data:`SCF_HANDLERS` is the same handler with pw.x's changes (:func:`safer_mixing`),
  for a caller with a preset but no adapter.
- :data:`STEP_HANDLERS` -- for a whole step stopped by a time limit: ``max_seconds_too_short``
  gives up (pw.x stopped before its first SCF iteration: resuming under the same limit would
  stop at the same place, exit 34) and ``walltime_reached`` resumes from the checkpoint.
  ``tmdflow compute`` (:mod:`tmdflow.compute`) resumes in the same process; the FireWorks edge
  (:mod:`tmdflow.fireworks`) asks :func:`decide` and resumes in a detour Firework, because its
  launcher's time budget is spent.

Not a handler here: the monolayer relaxation's cut-off ladder (``slab_pulay_stress``,
:mod:`tmdflow.calculators.espresso.relax_ladder`).  Its "failure" is a check on a relaxation that
succeeded; the next rung starts from the previous rung's relaxed structure (not from the step's
input) in a directory of its own, and a resumed step finds its place by scanning the rungs'
directories and reusing those that finished -- state that a RETRY's preset changes do not carry.
It records its raises as Corrections of the same shape (handler, reason, changes, attempt).
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


def scf_not_converged(retry_changes: Callable[[Preset], dict[str, Any] | None]) -> RestartHandler:
    """The handler of an SCF that did not converge: retry with ``retry_changes(preset)`` (a code's
    ``CalculatorAdapter.scf_retry_changes``: what it calls safer), at most MAX_SCF_CORRECTIONS
    times; give up at once when the code has nothing safer to try (None)."""
    def respond(failure: BaseException, attempt: Attempt) -> Response:
        changes = retry_changes(attempt.preset)
        if not changes:
            return Response(Action.GIVE_UP, _reason(failure))
        return Response(Action.RETRY, _reason(failure), changes)

    return RestartHandler("scf_not_converged", (ScfNotConverged,), respond, max_corrections=MAX_SCF_CORRECTIONS)


def scf_handlers(calc: Any) -> tuple[RestartHandler, ...]:
    """The handlers of an SCF run through adapter ``calc`` (tmdflow.steps.context.run_scf)."""
    return (scf_not_converged(calc.scf_retry_changes),)


SCF_NOT_CONVERGED = scf_not_converged(safer_mixing)  # pw.x's (EspressoCalculator.scf_retry_changes)

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
