"""The step registry: every workflow step, defined once in its own module of this package.

A step module holds ``SPEC = StepSpec(...)`` and its function ``run(ctx) -> StepOutcome``; the
registry finds the modules of this package (adding a step is one new module, docs/architecture.md)
and everything that lists or orders steps asks it: the workflow schema (names, order, which are
optional), the FireWorks edge (priorities, monolayer-only steps), the calculators' support
(capabilities each step needs) and ``tmdflow compute``'s pipeline.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Iterable

from ..errors import InputError

#: the structures a step may run on
DIMENSIONALITIES = ("monolayer", "bulk")
#: spin-orbit modes (tmdflow.presets.SPIN_ORBIT_MODES)
BOTH_MODES = ("scf", "second_variational")


@dataclass(frozen=True)
class StepSpec:
    """What a step is, for everything that plans workflows (no run-time state)."""

    name: str
    order: int  # position in a workflow: steps run in this order
    run: Callable  # StepContext -> StepOutcome
    summary: str
    core: bool = False  # every workflow has it (optional steps may follow the core ones only)
    requires: frozenset[str] = frozenset()  # calculator capabilities it needs (CalculatorAdapter.capabilities)
    dimensionalities: tuple[str, ...] = DIMENSIONALITIES  # structures a workflow gives it
    spin_orbit_modes: tuple[str, ...] = BOTH_MODES  # preset modes it belongs to
    moves_structure: bool = False  # it relaxes: its structure goes to the steps after it
    required_in: tuple[str, ...] = ()  # spin-orbit modes whose workflows must have it
    produces: frozenset[str] = frozenset()  # what later steps may need (a density, bands, ...)
    needs: frozenset[str] = frozenset()  # what an earlier step of the same workflow must produce


_SPECS: dict[str, StepSpec] = {}


def _discover() -> dict[str, StepSpec]:
    if not _SPECS:
        from .. import steps as package

        found = []
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            spec = getattr(module, "SPEC", None)
            if isinstance(spec, StepSpec):
                found.append(spec)
        orders = [s.order for s in found]
        if len(set(orders)) != len(orders) or len({s.name for s in found}) != len(found):
            raise RuntimeError(f"step registry: names and orders must be unique: {[(s.name, s.order) for s in found]}")
        for spec in sorted(found, key=lambda s: s.order):
            _SPECS[spec.name] = spec
    return _SPECS


def refresh() -> None:
    """Forget the steps found so far: the next question looks for the step modules again (after a
    step module was added to, or removed from, the package's ``__path__``)."""
    _SPECS.clear()


def all_steps() -> tuple[StepSpec, ...]:
    """Every step, in workflow order."""
    return tuple(_discover().values())


def names() -> tuple[str, ...]:
    return tuple(_discover())


def core_names() -> tuple[str, ...]:
    return tuple(s.name for s in all_steps() if s.core)


def optional_names() -> tuple[str, ...]:
    return tuple(s.name for s in all_steps() if not s.core)


def spec(name: str) -> StepSpec:
    specs = _discover()
    if name not in specs:
        raise InputError(f"unknown step '{name}'", f"steps are {list(specs)}")
    return specs[name]


def index(name: str) -> int:
    """A step's position in workflow order (FireWorks priorities, extending workflows)."""
    return names().index(spec(name).name)


def structure_mover() -> str:
    """The step whose structure the later steps of a chain start from (the relaxation)."""
    return next(s.name for s in all_steps() if s.moves_structure)


def producers(product: str, before: str | None = None) -> tuple[str, ...]:
    """The steps that produce ``product`` (a density, bands: ``StepSpec.produces``), latest in
    workflow order first -- before step ``before`` when given.  A job's ``continues_from`` /
    ``potential_from`` come from here, so no step spells another's name."""
    limit = spec(before).order if before is not None else None
    return tuple(s.name for s in reversed(all_steps()) if product in s.produces
                 and (limit is None or s.order < limit))


def supported_steps(capabilities: Iterable[str]) -> tuple[str, ...]:
    """The steps a calculator with these capabilities implements."""
    have = frozenset(capabilities)
    return tuple(s.name for s in all_steps() if s.requires <= have)


def for_calculator(calculator: str) -> tuple[str, ...]:
    """The steps the calculator registered as ``calculator`` implements."""
    from ..calculators.base import capabilities

    return supported_steps(capabilities(calculator))


def required(spin_orbit_mode: str) -> tuple[str, ...]:
    """The steps every workflow of this mode has: one material at a given geometry, no relaxation
    (``tmdflow compute``)."""
    return tuple(s.name for s in all_steps() if spin_orbit_mode in s.required_in)


def order_problems(steps: list[str]) -> list[str]:
    """What is wrong with a workflow's step list whatever its preset: unknown names, order, an
    optional step before a core one."""
    known = names()
    bad = [s for s in steps if s not in known]
    if bad:
        return [f"unknown step {bad}; steps are {list(known)}"]
    if [s for s in known if s in steps] != list(steps):
        return [f"steps must keep the order {list(known)}"]
    kinds = [spec(s).core for s in steps]
    if True in kinds and False in kinds and kinds.index(False) < len(kinds) - 1 - kinds[::-1].index(True):
        return [f"only {list(optional_names())} may follow the core steps {list(core_names())}"]
    return []


def mode_problems(steps: list[str], spin_orbit_mode: str) -> list[str]:
    """What is wrong with a workflow's step list for its preset's spin-orbit mode: steps of the
    other mode, required steps missing, a step whose input no earlier step produces."""
    problems = []
    foreign = [s for s in steps if spin_orbit_mode not in spec(s).spin_orbit_modes]
    if foreign:
        problems.append(f"{', '.join(foreign)} not part of spin_orbit_mode {spin_orbit_mode}")
    missing = [s.name for s in all_steps() if spin_orbit_mode in s.required_in and s.name not in steps]
    if missing:
        problems.append(f"{spin_orbit_mode} needs {', '.join(missing)} in steps")
    produced: set[str] = set()
    for name in steps:
        lacking = spec(name).needs - produced
        if lacking:
            makers = [s.name for s in all_steps() if s.produces & lacking]
            problems.append(f"{name} needs {', '.join(makers)} before it ({', '.join(sorted(lacking))})")
        produced |= spec(name).produces
    return problems
