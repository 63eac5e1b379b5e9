"""Elk steps: the relaxation (task 2; a monolayer's a from an E(a) scan), the ground state
(scalar-relativistic, then spin-orbit continuing from it), and the spin-orbit levels at Gamma,
K, K', M, Q with the spin of the states that sign Delta_CB.

Directories (every name below ``<formula>/`` is the requesting job's step, ``job.step``):
  <root>/elk/<formula>/            the ground state; elk.in, species files (R_mt edited), STATE.OUT
  <root>/elk/<formula>/<scf step>/ copies of INFO.OUT, EIGVAL.OUT, STATE.OUT, elk.in after each SCF
                                   (the spin-orbit one, spinorb .true., continues from the STATE.OUT
                                   of an SCF in ``job.continues_from``)
  <root>/elk/<formula>/bands/      the bands step: a copy of the converged STATE.OUT (of the first
                                   SCF of ``job.potential_from`` that ran), then
                                   task 1 with maxscl 1 on an n x n x 1 grid holding every
                                   requested k-point (reducek 0: no symmetry reduction), whose
                                   EIGVAL.OUT holds the levels of the converged potential, and
                                   task 16 (LSJ_KST.OUT, <S_z> per state) at K and K'
  <relax step>/elk/scan<i>/, final/  the relax step of a monolayer: task 2 at each a of the scan,
                                   then at the fitted a (bulk: positions/); GEOMETRY.OUT, FORCES_OPT.OUT
  <relax step>/elk/height<i>/      with elk_relax_height: energy, task 0 at the fitted a and the
                                   heights of the E(d) parabola (INFO.OUT: the total energy)
A 16 x 16 SCF mesh does not contain K, and Elk's band-structure task (20) writes path distances
(BAND.OUT), not k-points: hence the one-shot grid run, whose K levels agree with those of a 6 x 6
SCF to 3e-4 meV (docs/elk.md).
Every step reads back what Elk wrote: the clean end of the run, Error()/Warning() messages, the
crystal symmetry count, the muffin-tin radii, the SCF convergence.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from ase import Atoms

from ...bands import BandData
from ...errors import (
    CalculationFailed, ElkCrashed, ElkInputRejected, InputError, OutputParseError, ScfNotConverged,
    StructureSymmetryError,
)
from ...presets import Preset
from ...structures import build_monolayer, monolayer_height
from ...units import BOHR_ANGSTROM, HARTREE_EV
from ..all_electron import AllElectronCalculator
from ..base import BUILTIN_CALCULATORS
from ..jobs import BandsJob, RelaxJob, ScfJob
from ..records import AllElectronStepResult, ProgressFn, RunRecord
from .inputs import ElkParameters, format_elk_in, species_texts, write_species
from .parsers import (
    ElkInfo, parse_eigval, parse_forces_opt, parse_geometry, parse_info, parse_kpoints, parse_lsj_kst,
    parse_output_errors,
)
from .profile import ElkProfile
from .relax import (
    MAX_HEIGHT_POINTS, HeightFit, ScanPoint, first_heights, fit_height, fit_lattice_constant, interpolated_height,
    lattice_constants, monolayer_in_cell, next_height, relaxed_bulk, relaxed_height, relaxed_monolayer,
    scan_lattice_constants, scan_point_key, starting_height,
)

#: order of the point group of the space group (Elk's "Number of crystal symmetries"):
#: P-6m2 (187, monolayer) has 12 operations, P6_3/mmc (194, 2H bulk) 24
SYMMETRY_COUNT = {187: 12, 194: 24}
KEPT_FILES = ("INFO.OUT", "EIGVAL.OUT", "STATE.OUT", "elk.in", "KPOINTS.OUT", "TOTENERGY.OUT", "GAP.OUT")
#: the largest n x n grid the bands step will run on (K needs 3 | n, Q = (1/6, 1/6) needs 6 | n)
MAX_BANDS_GRID = 48
BANDS_KPOINTS_FILE = "bands_kpoints.txt"


@dataclass
class ElkStepResult(AllElectronStepResult):
    info: ElkInfo | None = None

    def outputs(self) -> dict:
        out = dict(self.extra)
        if self.info is not None:
            i = self.info
            out.update({
                "total_energy_ev": i.total_energy_ha * HARTREE_EV if i.total_energies_ha else None,
                "fermi_energy_ev": i.fermi_energies_ha[-1] * HARTREE_EV if i.fermi_energies_ha else None,
                "n_scf_steps": i.n_iterations, "converged": i.converged, "n_kpoints": i.n_kpoints,
                "n_crystal_symmetries": i.n_crystal_symmetries,
                "gap_ev_elk": i.indirect_gap_ha * HARTREE_EV if i.indirect_gap_ha is not None else None,
                "elk_warnings": list(i.warnings),
            })
        return out


def _grid_for(kpoints: list[tuple[Fraction, Fraction, Fraction]]) -> int:
    """The smallest n such that every in-plane coordinate is a multiple of 1/n."""
    n = 1
    for k in kpoints:
        if k[2] != 0:
            raise InputError(f"k-point {k} is not in the plane kz = 0", "the Elk bands step is for monolayers")
        for x in k[:2]:
            n = n * Fraction(x).denominator // math.gcd(n, Fraction(x).denominator)
    return n


class ElkCalculator(AllElectronCalculator[ElkProfile]):
    name = "elk"
    profile_type = ElkProfile
    #: relax: task 2 (forces) and an E(a) scan for a monolayer's a (docs/elk.md, "Relaxation");
    #: bands_sr/soc_map/figures are Quantum ESPRESSO's
    #: what this code can run (tmdflow.steps.registry derives the steps it supports)
    capabilities = BUILTIN_CALCULATORS["elk"].capabilities
    #: a retry of an unconverged SCF runs more loops (Elk adapts its own mixing parameter
    #: between loops; tmdflow sets none)
    scf_loops_key = "elk_maxscl"
    case_folder = "elk"

    @classmethod
    def bands_directory(cls, root: Path, formula: str) -> Path:
        return cls.case_directory(root, formula) / "bands"

    # -- running and checking ----------------------------------------------------------------
    def _parameters(self, preset: Preset, tasks: tuple[int, ...], kmesh: tuple[int, int, int], spin_orbit: bool,
                    **kw) -> ElkParameters:
        return ElkParameters(tasks=tasks, ngridk=tuple(kmesh), spinorb=spin_orbit, rgkmax=preset.elk_rgkmax,
                             lmaxapw=preset.elk_lmaxapw, gmaxvr=preset.elk_gmaxvr, nempty=preset.elk_nempty,
                             epspot=preset.elk_epspot, epsengy=preset.elk_epsengy, maxscl=preset.elk_maxscl, **kw)

    def _run(self, atoms: Atoms, preset: Preset, directory: Path, params: ElkParameters, result: ElkStepResult,
             what: str, progress: ProgressFn | None = None, task_only: bool = False) -> ElkInfo | None:
        """Write species files and elk.in into ``directory``, run Elk, classify how it ended.
        ``task_only``: a post-processing task (16) that writes no INFO.OUT."""
        directory.mkdir(parents=True, exist_ok=True)
        elements = list(dict.fromkeys(atoms.get_chemical_symbols()))
        write_species(elements, self.profile.species_dir, directory, preset.elk_rmt)
        text = format_elk_in(atoms, params)
        (directory / "elk.in").write_text(text)
        for stale in (("RUNNING", "LSJ_KST.OUT") if task_only else ("INFO.OUT", "EIGVAL.OUT", "RUNNING", "LSJ_KST.OUT")):
            (directory / stale).unlink(missing_ok=True)
        result.input_text += f"# {directory.name}/elk.in (tasks {' '.join(map(str, params.tasks))})\n{text}"
        log = f"{what}.log"
        record = self.profile.run(directory, log, progress, label=f"elk {what}")
        result.runs.append(record)
        return self._check_run(directory, log, record, what, task_only)

    @staticmethod
    def _check_run(directory: Path, log: str, record: RunRecord, what: str, task_only: bool = False) -> ElkInfo | None:
        """Classify how an Elk run ended: input rejected (Error() on standard output), crashed
        (non-zero exit or no normal end in INFO.OUT), or finished."""
        errors = parse_output_errors(directory / log) if (directory / log).is_file() else ()
        info = parse_info(directory / "INFO.OUT") if (directory / "INFO.OUT").is_file() else None
        if info is not None:
            errors = errors or info.errors
        if errors:
            raise ElkInputRejected(
                f"{what}: Elk stopped with {' | '.join(errors[:3])} in {directory}",
                f"read {directory / log} and elk.in there; the species files are copies of the "
                "elk_species_dir ones with R_mt set by elk_rmt",
            )
        if task_only:
            ended = (directory / log).is_file() and "Elk code stopped" in (directory / log).read_text(errors="replace")
            if record.returncode == 0 and ended:
                return None
        if record.returncode != 0 or task_only or info is None or not info.stopped:
            tail = _tail(directory / log)
            raise ElkCrashed(
                f"{what}: elk-lapw ended without finishing (exit {record.returncode}) in {directory}: {tail}",
                "a signal (exit -11: segmentation fault) with several OpenMP threads and many empty states "
                "was seen with Elk 8.4: rerun with elk_threads: 1 (TMDFLOW_ELK_THREADS=1); read INFO.OUT",
            )
        return info

    @staticmethod
    def _check_ground_state(info: ElkInfo, preset: Preset, expected_spacegroup: int, directory: Path,
                            what: str, need_convergence: bool = True) -> None:
        want = SYMMETRY_COUNT.get(expected_spacegroup)
        if want is not None and info.n_crystal_symmetries != want:
            raise StructureSymmetryError(
                f"{what}: Elk found {info.n_crystal_symmetries} crystal symmetries in {directory}, the space "
                f"group {expected_spacegroup} has {want}",
                "the structure is not the ideal prism (or its coordinates lost digits): check elk.in and "
                "SYMCRYS.OUT there",
            )
        wrong = [r for r in info.muffin_tin_radii if abs(r - preset.elk_rmt) > 1e-6]
        if wrong:
            raise CalculationFailed(f"{what}: Elk used muffin-tin radii {info.muffin_tin_radii} bohr, not "
                                    f"elk_rmt = {preset.elk_rmt}", "report this as a tmdflow bug")
        if need_convergence and not info.converged:
            rms = info.rms_potential_changes[-1] if info.rms_potential_changes else float("nan")
            de = info.energy_changes_ha[-1] if info.energy_changes_ha else float("nan")
            raise ScfNotConverged(
                f"{what}: Elk's SCF did not converge in {info.n_iterations} loops in {directory} (RMS potential "
                f"change {rms:.2e}, energy change {de:.2e} Ha; targets {preset.elk_epspot:g}, {preset.elk_epsengy:g})",
                "raise elk_maxscl, then rerun the step",
            )

    @staticmethod
    def _keep(directory: Path, name: str) -> None:
        target = directory / name
        target.mkdir(exist_ok=True)
        for f in KEPT_FILES:
            if (directory / f).is_file():
                shutil.copyfile(directory / f, target / f)

    # -- steps --------------------------------------------------------------------------------
    def scf(self, job: ScfJob) -> ElkStepResult:
        """Ground state: scalar-relativistic (task 0, from atomic densities), or with spin-orbit
        coupling (task 1 from the STATE.OUT of the first SCF of ``job.continues_from`` that ran,
        else task 0)."""
        step, preset = job.step, job.preset
        case_dir = self.job_case_directory(job)
        case_dir.mkdir(parents=True, exist_ok=True)
        result = ElkStepResult(step, case_dir, "", "Elk")
        tasks = (0,)
        start = next((s for s in job.continues_from if (case_dir / s / "STATE.OUT").is_file()), None)
        if start is not None:
            shutil.copyfile(case_dir / start / "STATE.OUT", case_dir / "STATE.OUT")
            tasks = (1,)
            result.extra["started_from"] = f"{start}/STATE.OUT"
        params = self._parameters(preset, tasks, job.kmesh, job.spin_orbit)
        info = self._run(job.atoms, preset, case_dir, params, result, step, job.progress)
        self._check_ground_state(info, preset, job.expected_spacegroup, case_dir, step)
        result.info, result.code_version = info, f"Elk {info.version}"
        self._keep(case_dir, step)
        return result

    def relax(self, job: RelaxJob) -> ElkStepResult:
        """Scalar-relativistic, like the other codes' relaxations.  Bulk: Elk's geometry
        optimisation (task 2: the atoms move along the forces until the largest is below
        ``elk_epsforce``) at the given cell.  Monolayer (``job.variable_cell``): task 2 at each a
        of an E(a) scan (``elk_scan_points`` x ``elk_scan_step``, the cell height fixed), E(a)
        from the relaxed end points, a Birch-Murnaghan fit (minimum inside the scan or
        CalculationFailed), then task 2 at the fitted a; with ``elk_relax_height: energy`` d is
        then the minimum of a parabola through task-0 energies E(d) around task 2's d at that a
        (:meth:`_height_scan`; Elk's forces at rgkmax 7 are not the gradient of its energy,
        docs/physics.md).  It runs in ``relax_vacuum`` when set
        and at the ``elk_relax_kmesh`` mesh (else ``kmesh``); the relaxed a and d (bulk: z) are
        rebuilt as the ideal structure (in the preset's ``vacuum``) in ``result.relaxed_atoms``."""
        preset, formula, step = job.preset, job.formula, job.step
        directory = Path(job.directory) if job.directory else job.layout.step_directory(job.step) / "elk"
        n = preset.elk_relax_kmesh or job.kmesh[0]
        kmesh = (n, n, job.kmesh[2])
        result = ElkStepResult(step, directory, "", "Elk")
        if not job.variable_cell:
            geometry, info = self._optimise_positions(job.atoms, preset, directory / "positions", kmesh, job, result)
            result.relaxed_atoms, z = relaxed_bulk(geometry, formula)
            result.info, result.code_version = info, f"Elk {info.version}"
            result.extra.update({"z_relaxed": z, "relax_kmesh": list(kmesh)})
            return result
        atoms = job.atoms
        if preset.relax_vacuum is not None:  # a and d do not feel the vacuum beyond ~10 A
            atoms = build_monolayer(formula, float(np.linalg.norm(atoms.cell[0])), monolayer_height(atoms),
                                    preset.relax_vacuum)
        a0 = float(np.linalg.norm(atoms.cell[0]))
        a_values = scan_lattice_constants(a0, preset.elk_scan_points, preset.elk_scan_step)
        energies, heights = [], []
        d0 = monolayer_height(atoms)
        for i, a in enumerate(a_values):
            start = monolayer_in_cell(formula, a, starting_height(a_values[:i], heights, a, d0), atoms.cell[2, 2])
            point = self._scan_point(start, preset, directory / f"scan{i}", kmesh, job, result)
            energies.append(point.energy_ev)
            heights.append(point.height_angstrom)
        fit = fit_lattice_constant(a_values, energies, float(atoms.cell[2, 2]))
        start = monolayer_in_cell(formula, fit.a_angstrom, interpolated_height(a_values, heights, fit.a_angstrom),
                                  atoms.cell[2, 2])
        geometry, info = self._optimise_positions(start, preset, directory / "final", kmesh, job, result)
        result.relaxed_atoms, d = relaxed_monolayer(geometry, formula, preset.vacuum)
        result.info, result.code_version = info, f"Elk {info.version}"
        result.extra.update({"lattice_scan": {**fit.as_output(), "d_angstrom": heights}, "d_relaxed_angstrom": d,
                             "relax_kmesh": list(kmesh), "relax_cell_height_angstrom": float(atoms.cell[2, 2]),
                             "relax_height": preset.elk_relax_height})
        if preset.elk_relax_height == "energy":
            a_final = lattice_constants(geometry)[0]
            by_energy = self._height_scan(formula, a_final, d, float(atoms.cell[2, 2]), preset, directory, kmesh,
                                          job, result)
            result.relaxed_atoms = build_monolayer(formula, a_final, by_energy.d_angstrom, preset.vacuum)
            result.extra.update({"height_scan": {**by_energy.as_output(), "d_forces_angstrom": d},
                                 "d_relaxed_angstrom": by_energy.d_angstrom})
        return result

    def _height_scan(self, formula: str, a: float, d_forces: float, cell_height: float, preset: Preset,
                     directory: Path, kmesh: tuple[int, int, int], job: RelaxJob, result: ElkStepResult) -> HeightFit:
        """d by energy at the fixed a: task 0 (no trimmed potential, SCF to ``elk_height_epsengy``)
        at d_forces and one ``elk_height_step`` to either side, then further steps on the falling
        side until the vertex of the parabola through the lowest three lies among them (at most
        MAX_HEIGHT_POINTS), that vertex.  Each point is checkpointed like a scan point."""
        heights: list[float] = []
        energies: list[float] = []
        todo = list(first_heights(d_forces, preset.elk_height_step))
        while todo:
            d = todo.pop(0)
            point = self._scan_point(monolayer_in_cell(formula, a, d, cell_height), preset,
                                     directory / f"height{len(heights)}", kmesh, job, result, energy_only=True)
            heights.append(d)
            energies.append(point.energy_ev)
            if not todo and (beyond := next_height(heights, energies, preset.elk_height_step)) is not None:
                if len(heights) >= MAX_HEIGHT_POINTS:
                    raise CalculationFailed(
                        f"relax: the E(d) minimum is still beyond d = {min(heights):.4f}-{max(heights):.4f} A after "
                        f"{len(heights)} points (task 2's d: {d_forces:.4f} A)",
                        "read the height*/INFO.OUT energies of the relax step; a larger elk_height_step, or "
                        "elk_relax_height: forces")
                todo.append(beyond)
        return fit_height(heights, energies)

    def _scan_point(self, atoms: Atoms, preset: Preset, directory: Path, kmesh: tuple[int, int, int],
                    job: RelaxJob, result: ElkStepResult, energy_only: bool = False) -> ScanPoint:
        """One point of the E(a) scan: task 2 at ``atoms``' a (``energy_only``: one of E(d), task 0
        at ``atoms`` as they are), or -- when ``job.checkpoints`` holds
        a point computed from exactly these inputs (elk.in and the species files, hashed) by the
        Elk version installed here -- that point without running Elk (listed in
        ``result.extra['scan_points_reused']``).  A point computed here is kept in
        ``job.checkpoints`` before the next one starts."""
        params = self._height_parameters(preset, kmesh) if energy_only else self._relax_parameters(preset, kmesh)
        key = scan_point_key(format_elk_in(atoms, params), self._species_texts(atoms, preset))
        a = float(np.linalg.norm(atoms.cell[0]))
        point = ScanPoint.from_checkpoint(job.checkpoints.get(key)) if job.checkpoints else None
        installed = self.profile.version() if point is not None else None
        if point is not None and installed is not None and point.elk_version != installed:
            # another binary: its energies are not to be fitted with this one's
            result.extra.setdefault("scan_points_recomputed", []).append(
                {"point": directory.name, "stored_elk_version": point.elk_version, "elk_version": installed})
            if job.progress:
                job.progress(f"{directory.name}: the stored point was computed by Elk {point.elk_version}, "
                             f"this is Elk {installed}: computed again")
            point = None
        if point is not None:
            result.extra.setdefault("scan_points_reused", []).append(directory.name)
            if job.progress:
                job.progress(f"{directory.name}: a = {a:.4f} A from the stored checkpoint (not run again)")
            return point
        if energy_only:
            info = self._ground_state(atoms, preset, directory, params, job, result)
            point = ScanPoint(a, info.total_energy_ha * HARTREE_EV, monolayer_height(atoms), 0, info.version)
        else:
            geometry, info = self._optimise_positions(atoms, preset, directory, kmesh, job, result)
            point = ScanPoint(a, info.total_energy_ha * HARTREE_EV, relaxed_height(geometry, job.formula),
                              result.extra["optimisation_steps"][-1], info.version)
        if job.checkpoints:
            label = f"{directory.name} a={a:.4f} A" + (f" d={point.height_angstrom:.4f} A" if energy_only else "")
            job.checkpoints.put(key, label, point.as_checkpoint())
        return point

    def _species_texts(self, atoms: Atoms, preset: Preset) -> list[str]:
        """The species files a run of ``atoms`` would use (R_mt set), in element order."""
        elements = list(dict.fromkeys(atoms.get_chemical_symbols()))
        return list(species_texts(elements, self.profile.species_dir, preset.elk_rmt).values())

    def _relax_parameters(self, preset: Preset, kmesh: tuple[int, int, int]) -> ElkParameters:
        return self._parameters(preset, (2,), kmesh, False, extra=(("epsforce", f"{preset.elk_epsforce:g}"),))

    def _height_parameters(self, preset: Preset, kmesh: tuple[int, int, int]) -> ElkParameters:
        """An E(d) point: a plain SCF (task 0; ``trimvg`` off, as Elk's default outside task 2)."""
        params = self._parameters(preset, (0,), kmesh, False, extra=(("trimvg", ".false."),))
        return dataclasses.replace(params, epsengy=preset.elk_height_epsengy)

    def _ground_state(self, atoms: Atoms, preset: Preset, directory: Path, params: ElkParameters, job: RelaxJob,
                      result: ElkStepResult) -> ElkInfo:
        """Task 0 from atomic densities in ``directory`` (emptied first), checked (symmetry, radii, SCF)."""
        if directory.exists():
            shutil.rmtree(directory)
        info = self._run(atoms, preset, directory, params, result, job.step, job.progress)
        self._check_ground_state(info, preset, job.expected_spacegroup, directory, job.step)
        return info

    def _optimise_positions(self, atoms: Atoms, preset: Preset, directory: Path, kmesh: tuple[int, int, int],
                            job: RelaxJob, result: ElkStepResult):
        """Task 2 (from atomic densities, no spin-orbit) in ``directory``: the structure it ended
        with (GEOMETRY.OUT) and INFO.OUT of its last step, checked (symmetry, radii, SCF, forces)."""
        if directory.exists():
            shutil.rmtree(directory)  # a rerun must not read an old GEOMETRY.OUT
        params = self._relax_parameters(preset, kmesh)
        info = self._run(atoms, preset, directory, params, result, job.step, job.progress)
        self._check_ground_state(info, preset, job.expected_spacegroup, directory, job.step)
        forces = parse_forces_opt(directory / "FORCES_OPT.OUT")
        if not forces.converged:
            raise CalculationFailed(
                f"{job.step}: Elk's geometry optimisation stopped after {forces.n_steps} steps in {directory} with "
                f"a largest force of {forces.max_forces_ha_bohr[-1]:.2e} Ha/bohr (target {preset.elk_epsforce:g})",
                "raise elk_epsforce, or start from a closer geometry (--a/--d); read FORCES_OPT.OUT there")
        result.extra.setdefault("optimisation_steps", []).append(forces.n_steps)
        return parse_geometry(directory / "GEOMETRY.OUT"), info

    def bands(self, job: BandsJob) -> ElkStepResult:
        """Spin-orbit levels on ``job.kpoints`` from the converged potential of the first SCF of
        ``job.potential_from`` that ran (a scalar-relativistic one: spin-orbit coupling then
        enters once, second-variationally, on its potential), and with ``job.spin_texture``
        <S_z> of the four states around the gap at K and K' (task 16).  The eigenvector files
        are deleted at the end (``scratch_freed_bytes``)."""
        preset, step, kpoints, labels, progress = job.preset, job.step, list(job.kpoints), list(job.labels), job.progress
        case_dir = self.job_case_directory(job)
        source = next((case_dir / s for s in job.potential_from if (case_dir / s / "STATE.OUT").is_file()), None)
        if source is None:
            raise InputError(f"no converged Elk ground state in {case_dir} "
                             f"({' or '.join(f'{s}/' for s in job.potential_from)} missing)",
                             f"run the {' (or '.join(job.potential_from)}{')' * (len(job.potential_from) - 1)} "
                             "step first: the bands use its potential")
        n = _grid_for(kpoints)
        if n > MAX_BANDS_GRID:
            raise InputError(f"the k list needs a {n} x {n} grid (above {MAX_BANDS_GRID})",
                             "set path_points: 0 for Elk (Gamma, K, K', M, Q lie on 6 x 6)")
        scf_info = parse_info(source / "INFO.OUT")
        atoms = _atoms_from_elk_in(source / "elk.in", scf_info)
        bands_dir = self.bands_directory(case_dir.parent.parent, case_dir.name)
        if bands_dir.exists():
            shutil.rmtree(bands_dir)  # a rerun must not pair old spins with new levels
        bands_dir.mkdir(parents=True)
        shutil.copyfile(source / "STATE.OUT", bands_dir / "STATE.OUT")
        result = ElkStepResult(step, bands_dir, "", f"Elk {scf_info.version}")
        params = self._parameters(preset, (1,), (n, n, 1), True, reducek=0)
        params = dataclasses.replace(params, maxscl=1)
        info = self._run(atoms, preset, bands_dir, params, result, "bands", progress)
        if info.n_crystal_symmetries != scf_info.n_crystal_symmetries:
            raise StructureSymmetryError(
                f"{step}: Elk found {info.n_crystal_symmetries} crystal symmetries in {bands_dir}, the ground "
                f"state {scf_info.n_crystal_symmetries}", "compare the elk.in files of both directories")
        self._check_ground_state(info, preset, -1, bands_dir, step, need_convergence=False)
        if info.started_from != "STATE.OUT":
            raise CalculationFailed(f"{step}: Elk did not start from the copied STATE.OUT in {bands_dir}",
                                    "read INFO.OUT there")
        grid = parse_kpoints(bands_dir / "KPOINTS.OUT").kpoints
        index = [_grid_index(grid, k) for k in kpoints]
        (bands_dir / BANDS_KPOINTS_FILE).write_text(
            "".join(f"{i + 1} {k[0]} {k[1]} {k[2]} {lab}\n" for i, k, lab in
                    zip(index, kpoints, list(labels) + [""] * len(kpoints))))
        result.extra = {"n_kpoints": len(kpoints), "bands_grid": [n, n, 1], "potential_from": source.name}
        if job.spin_texture:
            nocc = int(round(scf_info.valence_charge))
            states = [s for s in range(nocc - 1, nocc + 3)]
            ks = sorted({index[j] for j, lab in enumerate(labels) if lab in ("K", "K'")})
            kst = tuple((ik + 1, s) for ik in ks for s in states)
            # task 16 with the converged potential (task 1 overwrote STATE.OUT with one mixing
            # step) and the eigenvectors task 1 wrote for it
            shutil.copyfile(source / "STATE.OUT", bands_dir / "STATE.OUT")
            for f in ("EIGVAL.OUT", "INFO.OUT"):
                shutil.copyfile(bands_dir / f, bands_dir / f.replace(".OUT", "_bands.OUT"))
            lsj = dataclasses.replace(params, tasks=(16,), kstlist=kst)
            self._run(atoms, preset, bands_dir, lsj, result, "lsj", progress, task_only=True)
            for f in ("EIGVAL.OUT", "INFO.OUT"):
                shutil.copyfile(bands_dir / f.replace(".OUT", "_bands.OUT"), bands_dir / f)
            if not (bands_dir / "LSJ_KST.OUT").is_file():
                raise CalculationFailed(f"{step}: Elk task 16 wrote no LSJ_KST.OUT in {bands_dir}",
                                        "read lsj.log there")
            result.extra["spin_states"] = [list(x) for x in kst]
        result.info = info
        result.extra["scratch_freed_bytes"] = self.cleanup(case_dir)
        return result

    def read_spin_orbit_bands(self, directory: Path, labels: tuple[str, ...] = (),
                              step: str | None = None) -> BandData:
        """The bands run in ``directory`` (one per directory: ``step`` is not needed)."""
        directory = Path(directory)
        info = parse_info(directory / "INFO.OUT")
        eig = parse_eigval(directory / "EIGVAL.OUT")
        rows = [ln.split() for ln in (directory / BANDS_KPOINTS_FILE).read_text().splitlines() if ln.strip()]
        index = [int(r[0]) - 1 for r in rows]
        kpts = np.array([[float(Fraction(x)) for x in r[1:4]] for r in rows])
        for i, k in zip(index, kpts):
            d = eig.kpoints[i, :2] - k[:2]
            if np.abs(d - np.round(d)).max() > 1e-6:
                raise OutputParseError(f"{directory}: EIGVAL.OUT k-point {i + 1} is {eig.kpoints[i]}, not {k}",
                                       "rerun the bands step")
        if not info.spin_orbit:
            raise OutputParseError(f"{directory}/INFO.OUT: not a spin-orbit run", "rerun the bands step")
        sigma_z = None
        if (directory / "LSJ_KST.OUT").is_file():
            spins = parse_lsj_kst(directory / "LSJ_KST.OUT")
            sigma_z = np.full((len(index), eig.n_states), np.nan)
            for (ik, ist), sz in spins.s_z_total.items():
                for row, i in enumerate(index):
                    if i == ik - 1:
                        sigma_z[row, ist - 1] = 2.0 * sz  # S = sigma / 2
        return BandData(
            kpoints_crystal=kpts,
            eigenvalues=eig.eigenvalues_ha[index] * HARTREE_EV,
            n_electrons=float(info.valence_charge),
            spinor=True,
            reciprocal_cell=info.reciprocal_bohr / BOHR_ANGSTROM,
            sigma_z=sigma_z,
            labels=tuple(labels[: len(index)]) if labels else tuple(r[4] if len(r) > 4 else "" for r in rows),
        )

    def cleanup(self, directory: Path) -> int:
        """Delete the eigenvector files (EVECFV.OUT, EVECSV.OUT) and the bands step's copy of
        STATE.OUT: the largest files, not needed (scf_sr/ and scf_soc/ keep their STATE.OUT)."""
        freed = 0
        d = Path(directory)
        for p in [*d.glob("EVEC*.OUT"), *d.glob("bands/EVEC*.OUT"), *d.glob("bands/STATE.OUT")]:
            freed += p.stat().st_size
            p.unlink()
        return freed


def _grid_index(grid: np.ndarray, k) -> int:
    target = np.array([float(x) for x in k])
    d = grid[:, :2] - target[:2]
    hits = np.nonzero(np.all(np.abs(d - np.round(d)) < 1e-6, axis=1))[0]
    if len(hits) == 0:
        raise CalculationFailed(f"k-point {tuple(str(x) for x in k)} is not in Elk's KPOINTS.OUT",
                                "report this as a tmdflow bug (the grid was chosen to contain it)")
    return int(hits[0])


def _atoms_from_elk_in(path: Path, info: ElkInfo) -> Atoms:
    """The structure of a ground-state run, from its elk.in (lattice in bohr, lattice coordinates)."""
    from .inputs import read_elk_in_blocks

    blocks = read_elk_in_blocks(path.read_text())
    cell = np.array([[float(x) for x in line.split()] for line in blocks["avec"]]) * BOHR_ANGSTROM
    lines = blocks["atoms"]
    symbols, scaled, i = [], [], 1
    for _ in range(int(lines[0].split()[0])):
        el = lines[i].split("'")[1].removesuffix(".in")
        count = int(lines[i + 1].split()[0])
        for line in lines[i + 2: i + 2 + count]:
            symbols.append(el)
            scaled.append([float(x) for x in line.split()[:3]])
        i += 2 + count
    return Atoms(symbols=symbols, scaled_positions=scaled, cell=cell, pbc=True)


def _tail(path: Path, lines: int = 4) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(l.strip() for l in text[-lines:] if l.strip()) or "no output"
