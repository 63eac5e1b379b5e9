"""The optional ``phonons`` workflow step (Quantum ESPRESSO, monolayers): phonopy displacements
of an n x n x 1 supercell of the (relaxed) monolayer, one scalar-relativistic SCF with forces per
displacement, dispersion on Gamma-M-K-Gamma, frequencies at Gamma, M, K and the stability verdict.

Each displacement runs in ``<material>/phonons/disp-NNN/``; a displacement whose converged
output for the same positions is already there is read, not rerun, so an interrupted step
resumes where it stopped.  Scratch is deleted after each SCF (the XML copy is kept).
"""

from __future__ import annotations

import dataclasses
import shutil
import socket
from pathlib import Path

import numpy as np
from ase import Atoms

from ..errors import InputError
from ..phonons import displaced_supercells, phonon_dispersion, plot_dispersion
from ..store.documents import PhononDoc, PseudoRef, StructureDoc, TaskDocument
from .context import StepContext, StepOutcome, StepRequest, identity_record, pseudo_sha256, with_scf_corrections
from .registry import StepSpec

CONV_THR_PER_ATOM = 1e-10  # Ry: forces to ~1e-5 Ry/bohr for 0.01 A displacements


@dataclasses.dataclass(frozen=True)
class _DisplacementRun:
    """What the step keeps of one displacement's SCF: forces and provenance."""

    forces: np.ndarray  # eV/Angstrom
    qe_version: str | None
    cpu_seconds: float | None


def _previous_run(directory: Path, cell: Atoms) -> _DisplacementRun | None:
    """The converged SCF already in ``directory`` for exactly these positions, else None."""
    from ..calculators.espresso.parsers import parse_pw_stdout, parse_pw_xml

    xml = directory / "scf.xml"
    if not xml.is_file():
        return None
    try:
        out = parse_pw_xml(xml)
    except Exception:  # a damaged file from an interrupted run: rerun
        return None
    same = out.positions_angstrom.shape == cell.positions.shape and np.allclose(
        out.positions_angstrom, cell.positions, atol=1e-5)
    if not (same and out.converged and out.forces_ev_per_angstrom is not None):
        return None
    try:
        cpu = parse_pw_stdout(directory / "scf.out").cpu_seconds
    except Exception:  # the text output is provenance only; the XML holds the forces
        cpu = None
    return _DisplacementRun(out.forces_ev_per_angstrom, out.qe_version, cpu)


def _one_version(runs: list[_DisplacementRun]) -> str | None:
    versions = sorted({r.qe_version for r in runs if r.qe_version})
    return ", ".join(versions) or None  # more than one only if the code changed mid-step


def run(ctx: StepContext) -> StepOutcome:
    req, calc, atoms, say = ctx.request, ctx.calc, ctx.atoms, ctx.progress
    pseudos = ctx.pseudopotentials(rels=(1,))
    return _run(req, calc, atoms, ctx.layout.phonons, ctx.layout.figures, pseudos, say)


def _run(req: StepRequest, calc, atoms: Atoms, directory: Path, figures: Path, pseudos, say) -> StepOutcome:
    if req.dimensionality != "monolayer":
        raise InputError("the phonons step is implemented for monolayers",
                         "workflows leave it out for bulk (tmdflow.fireworks.build_workflows)")
    preset = req.preset
    n = preset.phonon_supercell
    if n < 2:
        raise InputError(f"phonon_supercell must be >= 2, got {n}", "use 3 (3x3x1) or 4")
    calc.check_executables(spin_texture=False)
    phonon, cells = displaced_supercells(atoms, n, preset.phonon_displacement)
    kn = max(1, int(round(preset.kmesh / n)))
    ph_preset = dataclasses.replace(preset, conv_thr=min(preset.conv_thr, CONV_THR_PER_ATOM * len(cells[0])))
    files = {el: pseudos.for_element(el, spin_orbit=False).path for el in sorted(set(atoms.get_chemical_symbols()))}
    runs: list[_DisplacementRun] = []
    wall, reused, corrections = 0.0, 0, []
    for i, cell in enumerate(cells, start=1):
        d = directory / f"disp-{i:03d}"
        previous = _previous_run(d, cell)
        if previous is not None:
            runs.append(previous)
            reused += 1
            continue
        if say:
            say(f"phonons: displacement {i}/{len(cells)} ({len(cell)} atoms, {kn}x{kn}x1)")
        result = with_scf_corrections(
            lambda p: calc.scf(cell, p, d, files, spin_orbit=False, kmesh=(kn, kn, 1), progress=say, step="scf",
                               stress=False), ph_preset, corrections)
        runs.append(_DisplacementRun(result.xml.forces_ev_per_angstrom, result.xml.qe_version,
                                     result.pw_cpu_seconds))
        wall += result.run.wall_seconds
        shutil.rmtree(d / "out", ignore_errors=True)
    res = phonon_dispersion(phonon, [r.forces for r in runs], n)
    out = figures
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_dispersion(res, out, f"{req.formula} monolayer {n}x{n}x1")
    doc = PhononDoc(material_id=req.material_id, formula=req.formula, result=res.to_dict(),
                    stable=res.stable, verdict=res.verdict, files=[str(p) for p in plots])
    task = TaskDocument(
        task_id=req.task_id, formula=req.formula, dimensionality=req.dimensionality, preset=preset.name,
        step=req.step, calculator=req.calculator, code_version=_one_version(runs),
        inputs={"supercell": [n, n, 1], "displacement_angstrom": preset.phonon_displacement,
                "kmesh": [kn, kn, 1], "conv_thr": ph_preset.conv_thr, "preset": dataclasses.asdict(preset)},
        structure=StructureDoc.from_atoms(atoms),
        outputs={"n_displacements": len(cells), "reused_displacements": reused, "stable": res.stable,
                 "verdict": res.verdict, "min_frequency_thz": res.min_frequency_thz,
                 # all displacements, reused ones included (None if an old text output is missing)
                 "pw_cpu_seconds": (sum(r.cpu_seconds for r in runs)
                                    if all(r.cpu_seconds is not None for r in runs) else None)},
        pseudopotentials={el: PseudoRef(file=p.name, sha256=pseudo_sha256(pseudos, el, p), source=pseudos.source_of(el))
                          for el, p in files.items()},
        wall_seconds=wall, directory=str(directory), host=socket.gethostname(), corrections=corrections,
        identity=identity_record(req),
    )
    return StepOutcome(req.structure or StructureDoc.from_atoms(atoms), req.relaxed, task=task, phonons=doc)


SPEC = StepSpec("phonons", 8, run, "phonon dispersion and stability (phonopy)", requires=frozenset({"phonon_forces"}),
                dimensionalities=("monolayer",), spin_orbit_modes=("scf",))
