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

import numpy as np
from ase import Atoms

from ..errors import InputError
from ..phonons import displaced_supercells, phonon_dispersion, plot_dispersion
from ..store.documents import PhononDoc, PseudoRef, StructureDoc, TaskDocument
from ..calculators.jobs import ScfJob
from .context import StepContext, StepOutcome, identity_record, run_scf
from . import registry
from .registry import StepSpec

CONV_THR_PER_ATOM = 1e-10  # Ry: forces to ~1e-5 Ry/bohr for 0.01 A displacements


@dataclasses.dataclass(frozen=True)
class _DisplacementRun:
    """What the step keeps of one displacement's SCF: forces and provenance."""

    forces: np.ndarray  # eV/Angstrom
    qe_version: str | None
    cpu_seconds: float | None


def _one_version(runs: list[_DisplacementRun]) -> str | None:
    versions = sorted({r.qe_version for r in runs if r.qe_version})
    return ", ".join(versions) or None  # more than one only if the code changed mid-step


def run(ctx: StepContext) -> StepOutcome:
    req, calc, atoms, say = ctx.request, ctx.calc, ctx.atoms, ctx.progress
    if req.dimensionality != "monolayer":
        raise InputError("the phonons step is implemented for monolayers",
                         "workflows leave it out for bulk (tmdflow.fireworks.build_workflows)")
    preset = req.preset
    n = preset.phonon_supercell
    if n < 2:
        raise InputError(f"phonon_supercell must be >= 2, got {n}", "use 3 (3x3x1) or 4")
    calc.check_executables(spin_texture=False)
    directory = ctx.layout.step_directory(req.step)
    # the dispersion figure goes beside the other figures, in the directory of the step that draws them
    figures = ctx.layout.step_directory(registry.producers("figure_files")[0])
    phonon, cells = displaced_supercells(atoms, n, preset.phonon_displacement)
    kn = max(1, int(round(preset.kmesh / n)))
    ph_preset = dataclasses.replace(preset, conv_thr=min(preset.conv_thr, CONV_THR_PER_ATOM * len(cells[0])))

    def job(i: int, cell: Atoms) -> ScfJob:  # one displacement's SCF: forces, no stress, in disp-NNN/ as scf.*
        return ctx.job(ScfJob, atoms=cell, preset=ph_preset, kmesh=(kn, kn, 1), directory=directory / f"disp-{i:03d}",
                       stem="scf", stress=False, spin_orbit=False, restart=False, max_seconds=None, progress=say)

    runs: list[_DisplacementRun] = []
    wall, reused, corrections = 0.0, 0, []
    for i, cell in enumerate(cells, start=1):
        previous = calc.finished_forces(job(i, cell))
        if previous is not None:
            runs.append(_DisplacementRun(*previous))
            reused += 1
            continue
        if say:
            say(f"phonons: displacement {i}/{len(cells)} ({len(cell)} atoms, {kn}x{kn}x1)")
        result = run_scf(calc, job(i, cell))
        corrections += result.corrections
        runs.append(_DisplacementRun(result.forces_ev_per_angstrom, result.code_version, result.pw_cpu_seconds))
        wall += result.wall_seconds
        shutil.rmtree(result.directory / "out", ignore_errors=True)
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
        pseudopotentials={el: PseudoRef(file=ref.file, sha256=ref.sha256, source=ref.source)
                          for el, ref in calc.scf_input_files(job(1, cells[0])).items()},
        wall_seconds=wall, directory=str(directory), host=socket.gethostname(), corrections=corrections,
        identity=identity_record(req),
    )
    return StepOutcome(req.structure or StructureDoc.from_atoms(atoms), req.relaxed, task=task, phonons=doc)


SPEC = StepSpec("phonons", 9, run, "phonon dispersion and stability (phonopy)", requires=frozenset({"phonon_forces"}),
                dimensionalities=("monolayer",), spin_orbit_modes=("scf",))
