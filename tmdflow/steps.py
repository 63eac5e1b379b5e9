"""Workflow steps as plain functions: relax -> scf_sr -> scf_soc -> bands_soc -> analysis.

Each step takes a typed :class:`StepRequest` and returns a typed :class:`StepOutcome` holding
the documents to store and the structure to hand to the next step.  No FireWorks, no database:
:mod:`tmdflow.fireworks` wraps these for the workflow engine, and tests call them directly.

Directory layout per material:  <run_root>/<formula>-<dim>-<preset>/{relax,sr,soc}/
The spin-orbit bands step runs in ``soc/`` and reuses the SCF charge density found there.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from ase import Atoms

from . import identity
from .analysis.slab_stress import GPA_TO_KBAR
from .analysis.splitting import analyze_bands
from .calculators import get_calculator
from .calculators.espresso.adapter import EspressoCalculator, PwStepResult, valence_electrons
from .errors import InputError, ScfNotConverged
from .figure_steps import FIGURE_STEPS, run_figure_step
from .kpoints import splitting_kpoints, splitting_kpoints_exact
from .materials import Material, get_material
from .presets import Preset
from .pseudo import PseudoSet, ensure_pseudopotentials_by_element, user_pseudopotentials
from .relax_ladder import relax_monolayer
from .settings import Settings
from .store.documents import (
    BandStructureDoc, Correction, FiguresDoc, MaterialDocument, PhononDoc, PseudoRef, StructureDoc, Table1Entry,
    TaskDocument,
)
from .structures import BULK_SPACEGROUP, MONOLAYER_SPACEGROUP, build_bulk_2h, build_monolayer, spacegroup_number

STEPS = ("relax", "scf_sr", "scf_soc", "bands_soc", "analysis", "bands_sr", "soc_map", "figures", "phonons")
#: the steps a workflow must have; the ones after "analysis" (tmdflow.figure_steps) are optional
CORE_STEPS = STEPS[:5]
MAX_SCF_CORRECTIONS = 2
ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class StepRequest:
    workflow: str
    formula: str
    dimensionality: str  # "monolayer" | "bulk"
    preset: Preset
    step: str
    calculator: str = "espresso"
    structure: StructureDoc | None = None  # from the parent step (relaxed), else built from inputs/
    relaxed: bool = False
    restart: bool = False
    max_seconds: float | None = None
    geometry: dict | None = None  # starting a, d (monolayer) or a, c, z (bulk) from a user's file
    source: dict | None = None  # structure source (tmdflow.identity); None: derived (older Fireworks)
    overrides: dict | None = None  # the workflow's preset overrides, recorded beside the result
    result_digest: str | None = None  # tmdflow.identity.result_hash; set by resolve_identity

    @property
    def structure_source(self) -> dict:
        """Where this chain's structure comes from (tmdflow.identity).  A Firework submitted before
        identities existed has none: a chain with a relax step has it first."""
        if self.source is not None:
            return self.source
        relaxed_by = "relax" if (self.step == "relax" or self.relaxed) else None
        return identity.structure_source(self.formula, self.dimensionality, self.geometry, relaxed_by)

    @property
    def settings_digest(self) -> str:
        return identity.settings_hash(self.calculator, self.preset, self.structure_source)

    @property
    def material_id(self) -> str:
        """``<formula>-<dim>-<preset>[-<calculator>]-<result hash>`` (tmdflow.identity): two
        results share it only when calculator, resolved settings, structure source and
        pseudopotential files are all the same."""
        if self.result_digest is None:
            raise RuntimeError("StepRequest.material_id before resolve_identity(): a programming error")
        return identity.material_key(self.formula, self.dimensionality, self.preset.name, self.calculator,
                                     self.result_digest)

    @property
    def task_id(self) -> str:
        return f"{self.material_id}-{self.step}"


@dataclass(frozen=True)
class StepOutcome:
    structure: StructureDoc
    relaxed: bool
    task: TaskDocument | None = None
    material: MaterialDocument | None = None
    bandstructure: BandStructureDoc | None = None
    figures: FiguresDoc | None = None
    phonons: PhononDoc | None = None
    corrections: list[Correction] = field(default_factory=list)


def select_pseudopotentials(material: Material, preset: Preset, settings: Settings,
                            rels: tuple[int, ...] = (1, 2), progress: ProgressFn | None = None) -> PseudoSet:
    """The preset's family, with its per-element replacements (``element_pseudo_families``), or
    the user's directory, for ``material``.

    The second-variational mode needs norm-conserving files: pw.x 6.7 stops in read_scf
    ("Reading PAW becsum") when a spin-orbit bands run reads a collinear PAW density.  Refused
    here, before anything runs.
    """
    if settings.user_pseudo_dir:
        pseudos = user_pseudopotentials(settings.user_pseudo_dir, material.elements, spin_orbit=True)
    else:
        pseudos = ensure_pseudopotentials_by_element(material.elements, preset.pseudo_family,
                                                     preset.element_pseudo_families, settings.pseudo_dir, rels=rels,
                                                     ld1_command=settings.ld1_command, progress=progress)
    if preset.spin_orbit_mode == "second_variational" and not pseudos.is_norm_conserving:
        raise InputError(
            f"spin_orbit_mode 'second_variational' needs norm-conserving pseudopotentials; "
            f"'{pseudos.family}' is not (pw.x 6.7 stops in read_scf, 'Reading PAW becsum', when a "
            "spin-orbit bands run reads a collinear PAW density)",
            "set pseudo_family: pslibrary-nc (and ecutwfc >= 70 Ry), or use spin_orbit_mode: scf",
        )
    return pseudos


def resolve_identity(req: StepRequest, settings: Settings) -> StepRequest:
    """``req`` with its result hash: the settings hash plus the SHA-256 of every pseudopotential
    file the material's chain uses on this worker (both relativistic kinds; none for an
    all-electron code).  Cheap: the files are generated once and their hashes are in the cache
    manifest.  Raises the usual input/pseudopotential errors before anything runs."""
    if req.result_digest is not None:
        return req
    files: dict[str, list[str]] = {}
    if get_calculator(req.calculator, settings).uses_pseudopotentials:
        material = get_material(req.formula)
        pseudos = select_pseudopotentials(material, req.preset, settings, rels=(1, 2))
        for table in (pseudos.scalar, pseudos.full):
            for el, pf in table.items():
                files.setdefault(el, []).append(pseudo_sha256(pseudos, el, pf.path))
    return dataclasses.replace(req, result_digest=identity.result_hash(req.settings_digest, files))


def identity_record(req: StepRequest) -> dict:
    """What a stored document says of its identity (shown by query, status, table1, report)."""
    return {"settings_hash": req.settings_digest, "result_hash": req.result_digest,
            "workflow": req.workflow, "overrides": dict(req.overrides or {}),
            "structure_source": req.structure_source, "identity_version": identity.IDENTITY_VERSION}


def initial_structure(formula: str, dimensionality: str, preset: Preset, geometry: dict | None = None) -> Atoms:
    """Starting geometry: the user's (``geometry``, read from a structure file) or
    inputs/materials.yaml (the paper's Table I where it has one)."""
    if geometry:
        if dimensionality == "monolayer":
            return build_monolayer(formula, geometry["a"], geometry["d"], preset.vacuum)
        return build_bulk_2h(formula, geometry["a"], geometry["c"], geometry["z"])
    m = get_material(formula)
    if dimensionality == "monolayer":
        if m.monolayer is None:
            raise InputError(f"no monolayer geometry for {formula} in inputs/materials.yaml", "add one")
        return build_monolayer(formula, m.monolayer.a, m.monolayer.d, preset.vacuum)
    if dimensionality == "bulk":
        if m.bulk is None:
            raise InputError(f"no bulk 2H geometry for {formula} in inputs/materials.yaml", "add one")
        return build_bulk_2h(formula, m.bulk.a, m.bulk.c, m.bulk.z)
    raise InputError(f"dimensionality '{dimensionality}' is not monolayer or bulk", "fix the workflow")


def table1_entry(atoms: Atoms, dimensionality: str, relaxed: bool) -> Table1Entry:
    z = atoms.positions[:, 2]
    a = float(np.linalg.norm(atoms.cell[0]))
    d = float(np.min(np.abs(z[2:] - z[0]))) if dimensionality == "bulk" else float(np.mean(np.abs(z[1:] - z[0])))
    if dimensionality == "bulk":
        c = float(atoms.cell[2, 2])
        return Table1Entry(a_angstrom=a, c_angstrom=c, z=d / c, d_angstrom=d, relaxed=relaxed)
    return Table1Entry(a_angstrom=a, d_angstrom=d, relaxed=relaxed)


def _kmesh(preset: Preset, dimensionality: str) -> tuple[int, int, int]:
    return (preset.kmesh, preset.kmesh, 1 if dimensionality == "monolayer" else preset.kmesh_bulk_kz)


def _task(req: StepRequest, result: PwStepResult, atoms: Atoms, files: dict[str, Path], pseudos,
          corrections: list[Correction]) -> TaskDocument:
    x = result.xml
    forces = x.forces_ev_per_angstrom
    return TaskDocument(
        task_id=req.task_id, formula=req.formula, dimensionality=req.dimensionality, preset=req.preset.name,
        step=req.step, calculator=req.calculator, code_version=x.qe_version,
        inputs={"pw_input": result.input_text, "preset": dataclasses.asdict(req.preset)},
        structure=StructureDoc.from_atoms(atoms),
        outputs={
            "total_energy_ev": x.total_energy_ev, "converged": x.converged, "relax_converged": x.relax_converged,
            "n_scf_steps": x.n_scf_steps, "fermi_energy_ev": x.fermi_energy_ev,
            "max_force_ev_per_angstrom": float(np.abs(forces).max()) if forces is not None else None,
            # diagonal of the stress tensor (kbar, of the final structure; scf and relax steps)
            "stress_diagonal_kbar": ([float(v) * GPA_TO_KBAR for v in np.diag(x.stress_gpa)]
                                     if x.stress_gpa is not None else None),
            "n_electrons": x.bands.n_electrons, "n_kpoints": len(x.bands.kpoints_crystal),
            # non-SCF runs: final eigenvalues short of the Davidson threshold (None for SCF runs,
            # where pw.x prints the same line for transient early iterations)
            "unconverged_eigenvalues": (result.stdout.unconverged_eigenvalues
                                        if x.calculation in ("bands", "nscf") else None),
            # this run and, for a step resumed after max_seconds, the interrupted runs before it
            "pw_cpu_seconds": result.pw_cpu_seconds, "pw_runs_interrupted": len(result.interrupted),
            # bands.x (bands_soc, soc_map) / projwfc.x (bands_sr) after pw.x; None for other steps
            "postprocessing_cpu_seconds": EspressoCalculator.postprocessing_cpu_seconds(result.directory, req.step),
        },
        pseudopotentials={el: PseudoRef(file=p.name, sha256=pseudo_sha256(pseudos, el, p), source=pseudos.source_of(el))
                          for el, p in files.items()},
        wall_seconds=result.run.wall_seconds, directory=str(result.directory), host=socket.gethostname(),
        corrections=corrections, identity=identity_record(req),
    )


def pseudo_sha256(pseudos, element: str, path: Path) -> str:
    """SHA-256 of the file a step used: from the manifest when it is the managed file, else computed."""
    for table in (pseudos.full, pseudos.scalar):
        if element in table and table[element].path == path:
            return table[element].sha256
    from .pseudo.library import sha256_of

    return sha256_of(path)


def with_scf_corrections(run: Callable[[Preset], PwStepResult], preset: Preset,
                         corrections: list[Correction]) -> PwStepResult:
    """Run an SCF-type step; on non-convergence retry with safer mixing (recorded), up to a bound."""
    current = preset
    for attempt in range(1, MAX_SCF_CORRECTIONS + 2):
        try:
            return run(current)
        except ScfNotConverged as exc:
            if attempt > MAX_SCF_CORRECTIONS:
                raise
            changes = {"mixing_beta": round(current.mixing_beta / 2, 4),
                       "electron_maxstep": max(current.electron_maxstep * 2, 100)}
            corrections.append(Correction(handler="scf_not_converged", reason=exc.problem, changes=changes,
                                          attempt=attempt))
            current = dataclasses.replace(current, **changes)
    raise AssertionError("unreachable")


def run_step(req: StepRequest, settings: Settings, run_root: Path, progress: ProgressFn | None = None) -> StepOutcome:
    if req.step not in STEPS:
        raise InputError(f"unknown step '{req.step}'", f"steps are {STEPS}")
    req = resolve_identity(req, settings)
    atoms = (req.structure.to_atoms() if req.structure
             else initial_structure(req.formula, req.dimensionality, req.preset, req.geometry))
    expected = MONOLAYER_SPACEGROUP if req.dimensionality == "monolayer" else BULK_SPACEGROUP
    material = get_material(req.formula)
    root = Path(run_root) / req.material_id
    calc = get_calculator(req.calculator, settings)  # adapter registry: "espresso" (WIEN2k later)
    say = (lambda m: progress(f"{req.formula} {req.dimensionality}: {m}")) if progress else None
    corrections: list[Correction] = []
    second_variational = req.preset.spin_orbit_mode == "second_variational"
    kmesh = _kmesh(req.preset, req.dimensionality)

    if req.step == "analysis":
        return _analysis(req, atoms, root, calc)
    if not calc.uses_pseudopotentials:
        if req.step in (*FIGURE_STEPS, "phonons"):
            raise InputError(f"the {req.step} step is implemented for Quantum ESPRESSO only",
                             "remove bands_sr/soc_map/figures from a wien2k workflow (docs/wien2k.md)")
        return _all_electron_step(req, calc, atoms, root, kmesh, expected, say)
    if req.step == "phonons":
        from .phonon_step import run_phonon_step

        pseudos = select_pseudopotentials(material, req.preset, settings, rels=(1,))
        return run_phonon_step(req, calc, atoms, root, pseudos, say)
    if req.step in FIGURE_STEPS:
        rels = (1,) if req.step == "bands_sr" else (2,)
        pseudos = None if req.step == "figures" else select_pseudopotentials(material, req.preset, settings, rels=rels)
        return run_figure_step(req, calc, atoms, root, pseudos, say)

    calc.check_executables(spin_texture=req.step == "bands_soc" and req.preset.spin_texture)
    pseudos = select_pseudopotentials(material, req.preset, settings,
                                      rels=(1, 2) if req.step in ("relax", "scf_sr") else (2,))
    # scalar-relativistic steps: rel=1 files; in the second-variational mode the same FR NC files
    # as the spin-orbit step (pw.x averages them), so density and SOC Hamiltonian match
    scalar_step = req.step in ("relax", "scf_sr")
    scalar = ({el: pseudos.for_element(el, spin_orbit=second_variational).path for el in material.elements}
              if scalar_step else {})
    full = ({el: pseudos.for_element(el, spin_orbit=True).path for el in material.elements}
            if not scalar_step or second_variational else {})

    if req.step == "relax":
        relax_vacuum = req.preset.relax_vacuum if req.dimensionality == "monolayer" else None
        if relax_vacuum is not None:  # a and d do not feel the vacuum beyond ~10 A (docs/performance.md)
            start = table1_entry(atoms, "monolayer", False)
            atoms = build_monolayer(req.formula, start.a_angstrom, start.d_angstrom, relax_vacuum)
        check = None
        if req.dimensionality == "monolayer":  # vc-relax at the cell-relaxation cut-offs, raised until the
            # slab's sigma_zz (the stress's basis-set error) is small enough (tmdflow.relax_ladder)
            relaxation = relax_monolayer(
                calc, atoms, req.preset, root, scalar, kmesh, corrections, restart=req.restart,
                max_seconds=req.max_seconds, progress=say)
            result, relaxed_atoms, check = relaxation.result, relaxation.atoms, relaxation.check
        else:
            result, relaxed_atoms = calc.relax(
                atoms, req.preset, root / "relax", scalar, kmesh, variable_cell=False,
                progress=say, restart=req.restart, max_seconds=req.max_seconds)
        # symmetry must survive the relaxation (2Dxy + symmetric forces keep it)
        sg = spacegroup_number(relaxed_atoms, symprec=1e-3)
        if sg != expected:
            raise InputError(f"relaxation broke the symmetry: space group {sg}, expected {expected}",
                             f"inspect {root / 'relax'}")
        if relax_vacuum is not None:  # the later steps run in the preset's vacuum
            final = table1_entry(relaxed_atoms, "monolayer", True)
            relaxed_atoms = build_monolayer(req.formula, final.a_angstrom, final.d_angstrom, req.preset.vacuum)
        task = _task(req, result, relaxed_atoms, scalar, pseudos, corrections)
        if check is not None:  # the step's cost is that of every rung; each rung is recorded
            task.outputs["pw_cpu_seconds"] = relaxation.pw_cpu_seconds
            task.outputs["pw_runs_interrupted"] = relaxation.interrupted_runs
            task.wall_seconds = relaxation.wall_seconds
            task.outputs["relax_rungs"] = [r.as_output() for r in relaxation.rungs]
            task.outputs["slab_stress_kbar"] = {"sigma_xx": check.sigma_xx_kbar, "sigma_zz": check.sigma_zz_kbar,
                                                "sigma_zz_residual_forces": check.residual_force_kbar,
                                                "sigma_zz_basis": check.sigma_zz_basis_kbar,
                                                "threshold": check.threshold_kbar}
        return StepOutcome(StructureDoc.from_atoms(relaxed_atoms, sg), True, task=task, corrections=corrections)

    if req.step == "scf_sr":
        directory = root / ("soc" if second_variational else "sr")
        result = with_scf_corrections(
            lambda p: calc.scf(atoms, p, directory, scalar, spin_orbit=False, kmesh=kmesh, progress=say,
                               restart=req.restart, max_seconds=req.max_seconds),
            req.preset, corrections)
        files = scalar
    elif req.step == "scf_soc":
        if second_variational:
            raise InputError("the second-variational mode has no self-consistent spin-orbit step",
                             "remove scf_soc from the workflow's steps")
        result = with_scf_corrections(
            lambda p: calc.scf(atoms, p, root / "soc", full, spin_orbit=True, kmesh=kmesh, progress=say,
                               restart=req.restart, max_seconds=req.max_seconds),
            req.preset, corrections)
        files = full
    else:  # bands_soc: reuses the SCF charge density in soc/
        kpts, labels = splitting_kpoints(atoms.cell[:], req.preset.path_points)
        nbnd = int(round(valence_electrons(atoms, full))) + 2 * req.preset.extra_bands
        result = calc.bands(atoms, req.preset, root / "soc", full, spin_orbit=True, kpoints=kpts, nbnd=nbnd,
                            progress=say)
        (root / "soc" / "bands_labels.txt").write_text("\n".join(labels) + "\n")
        bandsx_seconds = None
        for stale in (root / "soc").glob("spin_texture.*"):  # a rerun must not pair old spins with new bands
            stale.unlink()
        # bulk 2H: inversion + time reversal make every level a Kramers pair, whose <sigma> is an
        # arbitrary choice inside the pair: bands.x would cost 1-2.5 min for nothing (docs/physics.md)
        if req.preset.spin_texture and req.dimensionality == "monolayer":
            t0 = time.monotonic()
            calc.spin_texture(root / "soc", result, progress=say)
            bandsx_seconds = time.monotonic() - t0
        freed = calc.cleanup(root / "soc")
        files = full
    task = _task(req, result, atoms, files, pseudos, corrections)
    if req.step == "bands_soc":
        task.outputs["bandsx_wall_seconds"] = bandsx_seconds
        task.outputs["scratch_freed_bytes"] = freed
    return StepOutcome(req.structure or StructureDoc.from_atoms(atoms), req.relaxed, task=task,
                       corrections=corrections)


def _all_electron_step(req: StepRequest, calc, atoms: Atoms, root: Path, kmesh: tuple[int, int, int],
                       expected: int, say: ProgressFn | None) -> StepOutcome:
    """relax / scf_sr / scf_soc / bands_soc with an all-electron code (WIEN2k): no
    pseudopotentials; the scalar-relativistic and spin-orbit SCF share one case directory."""
    calc.check_executables()
    case_dir = calc.case_directory(root, req.formula)
    second_variational = req.preset.spin_orbit_mode == "second_variational"
    if req.step == "relax":
        result, relaxed = calc.relax(atoms, req.preset, root / "relax", kmesh,
                                     variable_cell=req.dimensionality == "monolayer",
                                     expected_spacegroup=expected, formula=req.formula, progress=say)
        sg = spacegroup_number(relaxed, symprec=1e-3)
        task = _all_electron_task(req, result, relaxed)
        return StepOutcome(StructureDoc.from_atoms(relaxed, sg), True, task=task)
    if req.step == "scf_sr":
        result = calc.scf(atoms, req.preset, case_dir, spin_orbit=False, kmesh=kmesh,
                          expected_spacegroup=expected, progress=say)
    elif req.step == "scf_soc":
        if second_variational:
            raise InputError("the second-variational mode has no self-consistent spin-orbit step",
                             "remove scf_soc from the workflow's steps")
        result = calc.scf(atoms, req.preset, case_dir, spin_orbit=True, kmesh=kmesh,
                          expected_spacegroup=expected, progress=say)
    else:  # bands_soc
        kpts, labels = splitting_kpoints_exact(req.preset.path_points)
        result = calc.bands(req.preset, case_dir, kpts, labels, progress=say)
        (case_dir / "bands_labels.txt").write_text("\n".join(labels) + "\n")
        result.extra["scratch_freed_bytes"] = calc.cleanup(case_dir)
    return StepOutcome(req.structure or StructureDoc.from_atoms(atoms), req.relaxed,
                       task=_all_electron_task(req, result, atoms))


def _all_electron_task(req: StepRequest, result, atoms: Atoms) -> TaskDocument:
    return TaskDocument(
        task_id=req.task_id, formula=req.formula, dimensionality=req.dimensionality, preset=req.preset.name,
        step=req.step, calculator=req.calculator, code_version=result.code_version,
        inputs={"commands_and_files": result.input_text, "preset": dataclasses.asdict(req.preset)},
        structure=StructureDoc.from_atoms(atoms), outputs=result.outputs(), pseudopotentials={},
        wall_seconds=result.wall_seconds, directory=str(result.directory), host=socket.gethostname(),
        identity=identity_record(req),
    )


def _analysis(req: StepRequest, atoms: Atoms, root: Path, calc) -> StepOutcome:
    directory = calc.bands_directory(root, req.formula)
    labels_file = directory / "bands_labels.txt"
    labels = tuple(labels_file.read_text().split("\n")) if labels_file.is_file() else ()
    bands = calc.read_spin_orbit_bands(directory, labels)
    splitting = analyze_bands(bands)
    bs_id = f"{req.material_id}-bands_soc"
    bs = BandStructureDoc.from_bands(bs_id, "soc_path", bands)
    material = MaterialDocument(
        material_id=req.material_id, formula=req.formula, dimensionality=req.dimensionality,
        preset=req.preset.name, calculator=req.calculator, spin_orbit_mode=req.preset.spin_orbit_mode,
        table1=table1_entry(atoms, req.dimensionality, req.relaxed),
        splitting=splitting, bandstructure_id=bs_id,
        task_ids=[f"{req.material_id}-{s}" for s in CORE_STEPS[:-1]], identity=identity_record(req),
        structure=StructureDoc.from_atoms(atoms),
    )
    return StepOutcome(StructureDoc.from_atoms(atoms), req.relaxed, material=material, bandstructure=bs)
