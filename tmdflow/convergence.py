"""Convergence of Delta_VB(K), Delta_CB(K) and dE(Gamma-K) with each code's own basis parameters.

Quantum ESPRESSO: ecutwfc (ecutrho keeps the preset's ratio), k-mesh, vacuum.  Elk: rgkmax,
nempty, lmaxapw, k-mesh, vacuum (the muffin-tin radius and gmaxvr are held: they define the
method, not its truncation).  The parameters of each code are data (:data:`CALCULATOR_PARAMETERS`).

One parameter at a time (in the order given), each on an ascending ladder, the others held at
their converged values: a parameter is converged at the first value whose change to the next
ladder value is below the tolerance (default 2 meV) for all three quantities.  The error bar of
a quantity is the root-sum-square of its last change over the parameters (the changes are
independent estimates of the remaining truncation error).  Plain logic: the calculation is a
function passed in (the real one runs tmdflow's SCF + bands + analysis pipeline).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .analysis.splitting import SplittingResult
from .errors import InputError
from .presets import Preset

QUANTITIES = ("delta_vb_k_mev", "delta_cb_k_mev", "delta_e_gamma_k_mev")
PARAMETERS = ("ecutwfc", "kmesh", "vacuum")  # Quantum ESPRESSO's, in the order they are converged
ELK_PARAMETERS = ("elk_rgkmax", "elk_nempty", "elk_lmaxapw", "kmesh", "vacuum")
#: calculator -> the preset keys a convergence study scans, in order (a code without an entry has none)
CALCULATOR_PARAMETERS: dict[str, tuple[str, ...]] = {"espresso": PARAMETERS, "elk": ELK_PARAMETERS}
#: calculator -> preset keys recorded with a study but not scanned: a result with other values is
#: another method (Elk: the muffin-tin radius moves WSe2's Delta_VB(K) by 3-4 meV, docs/physics.md)
HELD_PARAMETERS: dict[str, tuple[str, ...]] = {"espresso": (), "elk": ("elk_rmt", "elk_gmaxvr")}
#: calculator -> a key only that code's studies record (tells a stored study's code from its settings)
OWN_KEY = {"espresso": "ecutwfc", "elk": "elk_rgkmax"}
INTEGER_PARAMETERS = frozenset({"kmesh", "elk_nempty", "elk_lmaxapw"})
ALL_PARAMETERS = tuple(dict.fromkeys(p for ps in CALCULATOR_PARAMETERS.values() for p in ps))
DEFAULT_TOLERANCE_MEV = 2.0


def parameters_for(calculator: str) -> tuple[str, ...]:
    """The preset keys a convergence study of ``calculator`` scans; InputError for a code without one."""
    if calculator not in CALCULATOR_PARAMETERS:
        raise InputError(f"no convergence study for calculator '{calculator}'",
                         f"use one of {sorted(CALCULATOR_PARAMETERS)}")
    return CALCULATOR_PARAMETERS[calculator]


def study_calculator(study_settings: dict) -> str:
    """The code a convergence study ran with, from the settings it recorded (a study always records
    its code's own parameters, :func:`converge`); studies written before Elk's were Quantum ESPRESSO's."""
    for calculator, key in OWN_KEY.items():
        if calculator != "espresso" and key in study_settings:
            return calculator
    return "espresso"


@dataclass(frozen=True)
class ConvergencePoint:
    settings: dict  # ecutwfc, ecutrho, kmesh, vacuum of this run
    values: dict  # the three quantities, meV
    wall_seconds: float = 0.0


@dataclass(frozen=True)
class ConvergenceResult:
    formula: str
    base_preset: str
    tolerance_mev: float
    converged_settings: dict
    converged: dict  # parameter -> bool (False: ladder exhausted)
    error_bars_mev: dict  # quantity -> error bar
    values_mev: dict  # quantity -> value at the converged settings
    points: list[ConvergencePoint] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _typed(parameter: str, value) -> int | float:
    return int(value) if parameter in INTEGER_PARAMETERS else float(value)


def point_settings(preset: Preset, current: dict, calculator: str = "espresso") -> dict:
    """The settings of one convergence point: every scanned parameter of ``calculator`` (``current``
    over the preset), plus Quantum ESPRESSO's ecutrho (it keeps the preset's ratio to ecutwfc) or
    Elk's held keys (:data:`HELD_PARAMETERS`)."""
    out = {p: _typed(p, current.get(p, getattr(preset, p))) for p in parameters_for(calculator)}
    if calculator == "espresso":
        ratio = preset.ecutrho / preset.ecutwfc  # density cut-off follows the wavefunction one
        out = {"ecutwfc": out["ecutwfc"], "ecutrho": out["ecutwfc"] * ratio, "kmesh": out["kmesh"],
               "vacuum": out["vacuum"]}
    for key in HELD_PARAMETERS[calculator]:
        out[key] = getattr(preset, key)
    return out


def converge(formula: str, preset: Preset, ladders: dict[str, list], run: Callable[[dict], tuple[SplittingResult, float]],
             tolerance_mev: float = DEFAULT_TOLERANCE_MEV, calculator: str = "espresso") -> ConvergenceResult:
    parameters = parameters_for(calculator)
    unknown = set(ladders) - set(parameters)
    if unknown:
        raise InputError(f"cannot converge {sorted(unknown)} with {calculator}",
                         f"ladders are given for {list(parameters)}")
    for p, values in ladders.items():
        if len(values) < 2 or list(values) != sorted(values):
            raise InputError(f"the {p} ladder {values} needs >= 2 ascending values", "e.g. ecutwfc: [45, 60, 75]")
    if tolerance_mev <= 0:
        raise InputError(f"tolerance {tolerance_mev} meV must be positive", "e.g. 2")
    current = {p: getattr(preset, p) for p in parameters}
    cache: dict[tuple, ConvergencePoint] = {}
    points: list[ConvergencePoint] = []

    def evaluate(trial: dict) -> ConvergencePoint:
        s = point_settings(preset, trial, calculator)
        key = tuple(sorted(s.items()))
        if key not in cache:
            result, wall = run(s)
            cache[key] = ConvergencePoint(s, {q: float(getattr(result, q)) for q in QUANTITIES}, wall)
            points.append(cache[key])
        return cache[key]

    last_change: dict[str, dict[str, float]] = {}
    converged: dict[str, bool] = {}
    for p in (q for q in parameters if q in ladders):
        ladder = list(ladders[p])
        previous = evaluate({**current, p: ladder[0]})
        converged[p] = False
        for i in range(1, len(ladder)):
            nxt = evaluate({**current, p: ladder[i]})
            change = {q: abs(nxt.values[q] - previous.values[q]) for q in QUANTITIES}
            last_change[p] = change
            if max(change.values()) < tolerance_mev:
                current[p] = ladder[i - 1]
                converged[p] = True
                break
            previous = nxt
        else:
            current[p] = ladder[-1]  # not converged within the ladder: the best we have
    final = evaluate(current)
    bars = {q: math.sqrt(sum(c[q] ** 2 for c in last_change.values())) for q in QUANTITIES}
    return ConvergenceResult(formula, preset.name, tolerance_mev, point_settings(preset, current, calculator),
                             converged, bars, final.values, points)


# The settings an error bar depends on.  Quantum ESPRESSO: a study's bars hold for a result
# computed with the same pseudopotentials (per element: pseudo_family with element_pseudo_families)
# and spin-orbit mode, and settings at least as converged as the study's.  Elk: the same muffin-tin
# radius and gmaxvr (HELD_PARAMETERS), and rgkmax, nempty, lmaxapw, k-mesh, vacuum at least the study's.
MATCHED = ("spin_orbit_mode",)
AT_LEAST = ("ecutwfc", "kmesh", "vacuum")
MATCHED_BY_CALCULATOR = {"espresso": MATCHED, "elk": HELD_PARAMETERS["elk"]}
AT_LEAST_BY_CALCULATOR = {"espresso": AT_LEAST, "elk": ELK_PARAMETERS}


def effective_pseudo_families(settings: dict, elements: Iterable[str] | None) -> dict[str, str] | str | None:
    """The recipe family of each of ``elements`` under ``settings`` (a preset as a dict); without
    ``elements``, the family name with the replacements as written.  None when not recorded."""
    family = settings.get("pseudo_family")
    if family is None:
        return None
    replacements = dict(settings.get("element_pseudo_families") or {})
    if elements is None:
        return family + "".join(f"+{el}:{f}" for el, f in sorted(replacements.items()))
    return {el: replacements.get(el, family) for el in sorted(set(elements))}


def error_bars_apply(study_settings: dict, result_settings: dict, elements: Iterable[str] | None = None,
                     calculator: str = "espresso") -> bool:
    """True when a convergence study's error bars hold for a result of ``calculator`` computed with
    ``result_settings`` (a preset as a dict).  The study must be of the same code
    (:func:`study_calculator`).  Quantum ESPRESSO: the same pseudopotential family for each of the
    material's ``elements`` (``element_pseudo_families`` for an element the material lacks does
    not matter), the same spin-orbit mode, and cut-off, k-mesh and vacuum each at least the
    study's converged value.  Elk: the same elk_rmt and elk_gmaxvr, and rgkmax, nempty, lmaxapw,
    k-mesh and vacuum at least the study's.  A result at settings above the converged ones has a
    smaller truncation error, so the study's bar is an upper bound; below them the study says
    nothing about it.  A key missing on either side is not compared."""
    if study_calculator(study_settings) != calculator or calculator not in AT_LEAST_BY_CALCULATOR:
        return False
    if calculator == "espresso":
        study_pseudos = effective_pseudo_families(study_settings, elements)
        result_pseudos = effective_pseudo_families(result_settings, elements)
        if study_pseudos is not None and result_pseudos is not None and study_pseudos != result_pseudos:
            return False
    for key in MATCHED_BY_CALCULATOR[calculator]:
        if key in study_settings and key in result_settings and study_settings[key] != result_settings[key]:
            return False
    for key in AT_LEAST_BY_CALCULATOR[calculator]:
        if key in study_settings and key in result_settings and \
                float(result_settings[key]) < float(study_settings[key]) - 1e-9:
            return False
    return True


def applicable_error_bars(studies: list[tuple[dict, dict]], result_settings: dict,
                          elements: Iterable[str] | None = None, calculator: str = "espresso") -> dict[str, float] | None:
    """The error bars (quantity -> meV) for one result of ``calculator`` from ``studies`` (pairs of
    a study's settings -- converged values plus pseudo_family, element_pseudo_families,
    spin_orbit_mode, or Elk's held keys -- and its error bars): the largest over the studies that
    apply (``error_bars_apply``), None when none does."""
    bars: dict[str, float] = {}
    applied = False
    for study_settings, study_bars in studies:
        if error_bars_apply(study_settings, result_settings, elements, calculator):
            applied = True
            for q, v in study_bars.items():
                bars[q] = max(bars.get(q, 0.0), float(v))
    return bars if applied else None


def convergence_id(formula: str, preset: Preset, calculator: str = "espresso") -> str:
    """Store key of a convergence study: ``<formula>-monolayer-<preset>``, plus ``+<El>:<family>``
    for each element of ``formula`` whose pseudopotential family differs from the named preset's
    (a workflow's overrides), so that studies with different files do not replace each other;
    another code than Quantum ESPRESSO adds ``-<calculator>`` (as material ids do) and no families."""
    from .materials import parse_formula
    from .presets import load_preset

    if calculator != "espresso":
        return f"{formula}-monolayer-{preset.name}-{calculator}"
    named = load_preset(preset.name)
    changed = {el: fam for el, fam in preset.pseudo_families_for(parse_formula(formula)).items()
               if fam != named.pseudo_family_for(el)}
    return f"{formula}-monolayer-{preset.name}" + "".join(f"+{el}:{fam}" for el, fam in changed.items())


def point_tag(settings: dict, calculator: str = "espresso") -> str:
    """The directory name of one convergence point (e.g. ``e45-k6-v15``, ``r7-n4-l8-k6-v15``)."""
    if calculator == "elk":
        return (f"r{settings['elk_rgkmax']:g}-n{settings['elk_nempty']}-l{settings['elk_lmaxapw']}"
                f"-k{settings['kmesh']}-v{settings['vacuum']:g}")
    return f"e{settings['ecutwfc']:g}-k{settings['kmesh']}-v{settings['vacuum']:g}"


def run_pipeline(formula: str, preset: Preset, settings, root: Path, progress=None, calculator: str = "espresso"):
    """The real calculation of one convergence point: tmdflow's monolayer pipeline with ``calculator``."""
    from .compute import compute_material

    def run(s: dict) -> tuple[SplittingResult, float]:
        scanned = {k: v for k, v in s.items() if k != "vacuum" and k not in HELD_PARAMETERS[calculator]}
        p = dataclasses.replace(preset, **scanned)
        r = compute_material(formula, p, settings, vacuum=s["vacuum"], directory=Path(root) / point_tag(s, calculator),
                             progress=progress, calculator=calculator)
        return r.splitting, sum(step.wall_seconds for step in r.steps)

    return run
