"""WIEN2k steps: prepare a case (struct + batch init + k-mesh + basis), SCF (scalar-relativistic,
then spin-orbit in the same case), relaxation (forces for z, an energy scan for a), bands.

The commands run, in a case directory named after the case (WIEN2k's convention):
  init_lapw -b -vxc 13 -ecut <ecut> -rkmax <rkmax> -numk <n>     (batch, non-interactive)
  x kgen   (answers on stdin: no added inversion, n1 n2 n3 divisions, no shift)
  run_lapw -ec <ec> -cc <cc> -i <max> [-p]         ;  save_lapw -d <step>  (the scalar SCF)
  (tmdflow writes case.inso and edits case.in1 instead of the interactive initso_lapw)
  run_lapw -so -ec <ec> -cc <cc> -i <max> [-p]     ;  save_lapw -d <step>  (the spin-orbit SCF)
  x lapw1 -band [-c] [-p] ; x lapwso [-c] [-p]     on case.klist_band -> <step>.energy, .energyso
  run_lapw -min -fc <fc> -ec -cc [-p]              relaxation of the atomic positions
(<step>: the requesting job's step name; the case sits in <root>/lapw/<formula>/, a relaxation's
cases in the layout's relax directory.)
Every step checks what it can before running and reads back what WIEN2k wrote: the symmetry
after sgroup/symmetry, the sphere radii, the basis, the SCF convergence, :WAR warnings and the
*.error files.  It never reports a result it did not read from WIEN2k's own output.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from ...bands import BandData
from ...errors import CalculationFailed, InputError, ScfNotConverged, StructureSymmetryError
from ...presets import Preset
from ...structures import spacegroup_number
from ...units import RYDBERG_EV
from ..all_electron import AllElectronCalculator
from ..base import BUILTIN_CALCULATORS
from ..jobs import BandsJob, RelaxJob, ScfJob
from ..records import AllElectronStepResult, ProgressFn
from .inputs import (
    edit_in1, format_inso, format_klist_band, format_machines, in1_basis, kgen_answers, parse_klist_band,
    rlo_energies,
)
from .parsers import Wien2kScf, electrons_from_in2, energy_files, parse_energy_files, parse_scf
from .profile import Wien2kProfile
from .struct import Wien2kStruct, format_struct, parse_struct, struct_from_atoms

METALS = ("Cr", "Mo", "W")


@dataclass
class Wien2kStepResult(AllElectronStepResult):
    scf: Wien2kScf | None = None

    def outputs(self) -> dict:
        out = dict(self.extra)
        if self.scf is not None:
            out.update({
                "total_energy_ev": self.scf.total_energy_ry * RYDBERG_EV,
                "fermi_energy_ev": self.scf.fermi_energy_ry * RYDBERG_EV if self.scf.fermi_energy_ry is not None else None,
                "n_scf_steps": self.scf.n_iterations, "gap_ev_wien2k": self.scf.gap_ev, "converged": True,
            })
        return out


def _has_inversion(atoms: Atoms) -> bool:
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sym = spglib.get_symmetry(cell, symprec=1e-4)
    return any(np.array_equal(r, -np.eye(3, dtype=int)) for r in sym["rotations"])


class Wien2kCalculator(AllElectronCalculator[Wien2kProfile]):
    name = "wien2k"
    profile_type = Wien2kProfile
    #: the figure steps (bands_sr, soc_map, figures) need <sigma_z> and projections: QE only
    #: what this code can run (tmdflow.steps.registry derives the steps it supports)
    capabilities = BUILTIN_CALCULATORS["wien2k"].capabilities
    #: a retry of an unconverged SCF runs more iterations (run_lapw -i; the mixing lives in
    #: case.inm, which tmdflow leaves to WIEN2k's init)
    scf_loops_key = "wien2k_max_iterations"
    #: cases in <root>/lapw/<formula>: WIEN2k takes the case name from the directory name
    case_folder = "lapw"

    @classmethod
    def bands_directory(cls, root: Path, formula: str) -> Path:
        """The case directory: the bands run in the converged case."""
        return cls.case_directory(root, formula)

    # -- running and checking ----------------------------------------------------------------
    def _run(self, args: list[str], case_dir: Path, log: str, result: Wien2kStepResult,
             stdin_text: str | None = None, progress: ProgressFn | None = None) -> None:
        record = self.profile.run(args, case_dir, log, stdin_text, progress, label=" ".join(args[:2]))
        result.runs.append(record)
        errors = {p.name: p.read_text(errors="replace").strip() for p in sorted(case_dir.glob("*.error"))
                  if p.stat().st_size > 0 and p.read_text(errors="replace").strip()}
        if record.returncode != 0 or errors:
            detail = "; ".join(f"{k}: {v.splitlines()[0]}" for k, v in errors.items()) or _tail(case_dir / log)
            raise CalculationFailed(
                f"WIEN2k '{' '.join(args)}' failed (exit {record.returncode}) in {case_dir}: {detail}",
                f"read {case_dir / log}, {case_dir.name}.dayfile and the *.error files there",
            )

    def _check_scf(self, case_dir: Path, preset: Preset, what: str) -> Wien2kScf:
        scf = parse_scf(case_dir / f"{case_dir.name}.scf")
        if scf.warnings:
            raise CalculationFailed(
                f"{what}: WIEN2k reported warnings in {case_dir.name}.scf: {' | '.join(scf.warnings[-3:])}",
                "inspect case.scf/case.output*; typical causes: ghost bands (QTL-B) -> adjust the energy "
                "parameters in case.in1 or the sphere radii",
            )
        if not scf.converged(preset.wien2k_ec, preset.wien2k_cc):
            e = scf.total_energies_ry
            raise ScfNotConverged(
                f"{what}: not converged after {scf.n_iterations} iterations in {case_dir} (last energy change "
                f"{abs(e[-1] - e[-2]) if len(e) > 1 else float('nan'):.2e} Ry, charge distance "
                f"{scf.charge_distances[-1] if scf.charge_distances else float('nan'):.2e})",
                "raise wien2k_max_iterations or reduce the mixing in case.inm, then rerun the step",
            )
        return scf

    # -- case preparation ---------------------------------------------------------------------
    def prepare(self, atoms: Atoms, preset: Preset, case_dir: Path, kmesh: tuple[int, int, int],
                expected_spacegroup: int, result: Wien2kStepResult, progress: ProgressFn | None = None) -> Wien2kStruct:
        """Write case.struct and .machines, run the batch init, set the k-mesh and the basis."""
        case = case_dir.name
        case_dir.mkdir(parents=True, exist_ok=True)
        before = struct_from_atoms(atoms, preset.wien2k_rmt, title=f"{case} (tmdflow)")
        text = format_struct(before)
        (case_dir / f"{case}.struct").write_text(text)
        (case_dir / ".machines").write_text(format_machines(self.profile.machine_hosts()))
        nk = kmesh[0] * kmesh[1] * kmesh[2]
        init = ["init_lapw", "-b", "-vxc", "13", "-ecut", f"{preset.wien2k_ecut:g}",
                "-rkmax", f"{preset.wien2k_rkmax:g}", "-numk", str(nk)]
        result.input_text += f"# {case}.struct\n{text}\n# {' '.join(init)}\n"
        self._run(init, case_dir, "init_lapw.log", result, progress=progress)
        after = self.check_struct_after_init(case_dir, before, expected_spacegroup)
        answers = kgen_answers(kmesh, _has_inversion(atoms))
        self._run(["x", "kgen"], case_dir, "kgen.log", result, stdin_text=answers)
        result.input_text += f"# x kgen < {answers!r}\n"
        self.set_basis(case_dir, preset)
        return after

    @staticmethod
    def check_struct_after_init(case_dir: Path, before: Wien2kStruct, expected_spacegroup: int) -> Wien2kStruct:
        """WIEN2k (sgroup, symmetry, setrmt) may rewrite case.struct: refuse any change of the
        space group, the inequivalent sites or the sphere radii."""
        path = case_dir / f"{case_dir.name}.struct"
        after = parse_struct(path.read_text())
        sg_after = spacegroup_number(after.to_atoms(), symprec=1e-3)
        label = after.spacegroup.split("_")[0] if after.spacegroup else ""
        if sg_after != expected_spacegroup or (label.isdigit() and int(label) != expected_spacegroup):
            raise StructureSymmetryError(
                f"WIEN2k changed the symmetry of {path}: space group {label or sg_after} "
                f"(spglib: {sg_after}), expected {expected_spacegroup}",
                "compare case.struct with case.struct_sgroup / case.outputsgroup; the input geometry "
                "must keep the ideal trigonal prism",
            )
        if [s.multiplicity for s in after.sites] != [s.multiplicity for s in before.sites]:
            raise StructureSymmetryError(
                f"WIEN2k regrouped the atoms of {path}: multiplicities "
                f"{[s.multiplicity for s in after.sites]}, written {[s.multiplicity for s in before.sites]}",
                "inspect case.outputsgroup; the structure must not be changed by sgroup",
            )
        changed = [f"{s.name}: {s.rmt:.4f}" for s, b in zip(after.sites, before.sites) if abs(s.rmt - b.rmt) > 1e-4]
        if changed:
            raise InputError(
                f"WIEN2k changed the sphere radii in {path} ({', '.join(changed)}; tmdflow wrote "
                f"{before.sites[0].rmt} bohr)",
                "your init_lapw runs setrmt in batch mode: keep the radii (the paper's 2.1 bohr) by "
                "setting wien2k_rmt to the value you want, or disable setrmt in your WIEN2k's init",
            )
        return after

    @staticmethod
    def _in1(case_dir: Path) -> Path:
        case = case_dir.name
        complex_file = case_dir / f"{case}.in1c"
        return complex_file if complex_file.is_file() else case_dir / f"{case}.in1"

    def set_basis(self, case_dir: Path, preset: Preset, emax_above_ef: float | None = None) -> None:
        in1 = self._in1(case_dir)
        if not in1.is_file():
            raise CalculationFailed(f"init_lapw wrote no {in1.name} in {case_dir}", "read init_lapw.log")
        in1.write_text(edit_in1(in1.read_text(), preset.wien2k_rkmax, preset.wien2k_lmax, emax_above_ef))
        rk, lmax, _ = in1_basis(in1.read_text())
        if abs(rk - preset.wien2k_rkmax) > 1e-6 or lmax != preset.wien2k_lmax:
            raise CalculationFailed(f"{in1} does not hold RKmax={preset.wien2k_rkmax}, lmax={preset.wien2k_lmax}",
                                    "report this as a tmdflow bug")

    def _parallel(self) -> list[str]:
        return ["-p"] if self.profile.k_parallel else []

    def _save(self, case_dir: Path, name: str, result: Wien2kStepResult) -> None:
        shutil.copyfile(case_dir / f"{case_dir.name}.scf", case_dir / f"{name}.scf")  # before: save_lapw may move it
        self._run(["save_lapw", "-d", name], case_dir, f"save_{name}.log", result)

    # -- steps --------------------------------------------------------------------------------
    def scf(self, job: ScfJob) -> Wien2kStepResult:
        """Scalar-relativistic SCF (preparing the case), or the spin-orbit SCF continuing from the
        converged case of an SCF in ``job.continues_from``."""
        step, preset, progress = job.step, job.preset, job.progress
        case_dir = self.job_case_directory(job)
        result = Wien2kStepResult(step, case_dir, "", self.profile.version())
        conv = ["-ec", f"{preset.wien2k_ec:g}", "-cc", f"{preset.wien2k_cc:g}", "-i", str(preset.wien2k_max_iterations)]
        if not job.spin_orbit:
            self.prepare(job.atoms, preset, case_dir, job.kmesh, job.expected_spacegroup, result, progress)
            args = ["run_lapw", *conv, *self._parallel()]
        else:
            if not any((case_dir / s).is_dir() for s in job.continues_from):
                raise InputError(f"no converged scalar-relativistic case in {case_dir} "
                                 f"({' or '.join(f'{s}/' for s in job.continues_from) or 'none given'} missing)",
                                 f"run the {' or '.join(job.continues_from) or 'scalar-relativistic SCF'} step first: "
                                 "the spin-orbit SCF continues from its density")
            self.prepare_spin_orbit(case_dir, preset, result)
            args = ["run_lapw", "-so", *conv, *self._parallel()]
        result.input_text += f"# {' '.join(args)}\n"
        self._run(args, case_dir, f"{step}.log", result, progress=progress)
        result.scf = self._check_scf(case_dir, preset, step)
        self._save(case_dir, step, result)
        return result

    def prepare_spin_orbit(self, case_dir: Path, preset: Preset, result: Wien2kStepResult) -> None:
        """What initso_lapw does for a non-magnetic case, written directly: case.inso (with p1/2
        local orbitals on the metal), a wider energy window in case.in1, case.in2c.  No symmetry
        is changed: without magnetisation spin-orbit coupling keeps the full space group."""
        case = case_dir.name
        struct = parse_struct((case_dir / f"{case}.struct").read_text())
        in1 = self._in1(case_dir)
        metals = [i for i, s in enumerate(struct.sites, start=1) if s.symbol in METALS]
        inso = format_inso(rlo_energies(in1.read_text(), metals))
        (case_dir / f"{case}.inso").write_text(inso)
        self.set_basis(case_dir, preset, emax_above_ef=preset.wien2k_so_emax)
        in2c, in2 = case_dir / f"{case}.in2c", case_dir / f"{case}.in2"
        if not in2c.is_file():
            if not in2.is_file():
                raise CalculationFailed(f"neither {in2.name} nor {in2c.name} in {case_dir}", "rerun init_lapw")
            shutil.copyfile(in2, in2c)  # lapw2 runs complex with spin-orbit coupling
        result.input_text += f"# {case}.inso\n{inso}"

    def relax(self, job: RelaxJob) -> Wien2kStepResult:
        """Bulk: atomic positions (z) by force minimisation at fixed a, c.  Monolayer
        (``job.variable_cell``): positions at each a of an energy scan (wien2k_scan_points x
        wien2k_scan_step), a from an equation-of-state fit of E(a), then a final force
        minimisation at the fitted a.  The relaxed structure is ``result.relaxed_atoms``."""
        atoms, preset, formula, kmesh, progress = job.atoms, job.preset, job.formula, job.kmesh, job.progress
        step, expected_spacegroup = job.step, job.expected_spacegroup
        directory = job.directory or job.layout.step_directory(step)
        result = Wien2kStepResult(step, directory, "", self.profile.version())
        if not job.variable_cell:
            relaxed, scf = self._minimise(atoms, preset, directory / formula, kmesh, expected_spacegroup, result,
                                          progress, step)
            result.scf, result.relaxed_atoms = scf, relaxed
            return result
        from ase.eos import EquationOfState

        a0 = float(np.linalg.norm(atoms.cell[0]))
        n = preset.wien2k_scan_points
        steps = [(i - (n - 1) / 2) * preset.wien2k_scan_step for i in range(n)]
        volumes, energies, ds, a_values = [], [], [], []
        for i, s in enumerate(steps):
            trial = atoms.copy()
            trial.set_cell(trial.cell[:] * np.array([[1 + s], [1 + s], [1.0]]), scale_atoms=True)
            relaxed, scf = self._minimise(trial, preset, directory / f"scan{i}" / formula, kmesh,
                                          expected_spacegroup, result, progress, step)
            a_values.append(a0 * (1 + s))
            volumes.append(relaxed.get_volume())
            energies.append(scf.total_energy_ry * RYDBERG_EV)
            ds.append(_height(relaxed))
        eos = EquationOfState(volumes, energies, eos="birchmurnaghan")
        v0, e0, _b = eos.fit()
        a_fit = float(np.sqrt(v0 / (np.sqrt(3) / 2 * atoms.cell[2, 2])))
        if not min(a_values) < a_fit < max(a_values):
            raise CalculationFailed(
                f"{step}: the E(a) minimum a = {a_fit:.4f} A lies outside the scan "
                f"{min(a_values):.4f}-{max(a_values):.4f} A",
                "raise wien2k_scan_step or start from a closer a (inputs/materials.yaml)",
            )
        final = atoms.copy()
        final.set_cell(final.cell[:] * np.array([[a_fit / a0], [a_fit / a0], [1.0]]), scale_atoms=True)
        relaxed, scf = self._minimise(final, preset, directory / "final" / formula, kmesh, expected_spacegroup,
                                      result, progress, step)
        result.scf, result.relaxed_atoms = scf, relaxed
        result.extra = {"lattice_scan": {"a_angstrom": a_values, "energy_ev": energies, "d_angstrom": ds,
                                         "a_fit_angstrom": a_fit, "eos": "birchmurnaghan"}}
        return result

    def _minimise(self, atoms: Atoms, preset: Preset, case_dir: Path, kmesh, expected_spacegroup: int,
                  result: Wien2kStepResult, progress, step: str) -> tuple[Atoms, Wien2kScf]:
        self.prepare(atoms, preset, case_dir, kmesh, expected_spacegroup, result, progress)
        args = ["run_lapw", "-min", "-fc", f"{preset.wien2k_fc:g}", "-ec", f"{preset.wien2k_ec:g}",
                "-cc", f"{preset.wien2k_cc:g}", "-i", str(preset.wien2k_max_iterations), *self._parallel()]
        result.input_text += f"# {' '.join(args)}\n"
        self._run(args, case_dir, f"{step}.log", result, progress=progress)
        scf = self._check_scf(case_dir, preset, step)
        struct = self.check_struct_after_init(case_dir, struct_from_atoms(atoms, preset.wien2k_rmt, ""),
                                              expected_spacegroup)
        relaxed = struct.to_atoms()
        # keep tmdflow's atom order (metal first) for the hand-off
        order = np.argsort([0 if s in METALS else 1 for s in relaxed.get_chemical_symbols()], kind="stable")
        return relaxed[order], scf

    def bands(self, job: BandsJob) -> Wien2kStepResult:
        """Scalar-relativistic (lapw1) and spin-orbit (lapwso) levels on ``job.kpoints``, from the
        converged potential of the case (an SCF of ``job.potential_from`` must have run); kept as
        ``<step>.energy`` and ``<step>.energyso``.  The eigenvector files are deleted at the end."""
        preset, step, progress, kpoints, labels = job.preset, job.step, job.progress, list(job.kpoints), list(job.labels)
        case_dir = self.job_case_directory(job)
        case = case_dir.name
        if not any((case_dir / s).is_dir() for s in job.potential_from):
            raise InputError(f"no converged SCF in {case_dir} ({' or '.join(f'{s}/' for s in job.potential_from)} "
                             "missing)", f"run the {' (and '.join(reversed(job.potential_from))}"
                             f"{')' * (len(job.potential_from) - 1)} steps first: bands use their potential")
        result = Wien2kStepResult(step, case_dir, "", self.profile.version())
        klist = format_klist_band(kpoints, labels)
        (case_dir / f"{case}.klist_band").write_text(klist)
        complex_flag = ["-c"] if (case_dir / f"{case}.in1c").is_file() else []
        lapw1 = ["x", "lapw1", "-band", *complex_flag, *self._parallel()]
        lapwso = ["x", "lapwso", *complex_flag, *self._parallel()]
        result.input_text += f"# {case}.klist_band\n{klist}# {' '.join(lapw1)}\n# {' '.join(lapwso)}\n"
        self._run(lapw1, case_dir, "bands_lapw1.log", result, progress=progress)
        self._run(lapwso, case_dir, "bands_lapwso.log", result, progress=progress)
        for suffix, target in (("energy", f"{step}.energy"), ("energyso", f"{step}.energyso")):
            parts = energy_files(case_dir, case, suffix)
            with open(case_dir / target, "w") as out:
                for i, p in enumerate(parts):
                    text = p.read_text()
                    if i > 0:  # later parts repeat the per-atom header: keep it once
                        n = 2 * parse_struct((case_dir / f"{case}.struct").read_text()).n_inequivalent
                        text = "\n".join(text.splitlines()[n:]) + "\n"
                    out.write(text)
        result.extra = {"n_kpoints": len(kpoints), "scratch_freed_bytes": self.cleanup(case_dir)}
        return result

    def read_spin_orbit_bands(self, case_dir: Path, labels: tuple[str, ...] = (), step: str | None = None) -> BandData:
        """The spin-orbit levels the bands step ``step`` kept in the case directory."""
        return self._read_bands(case_dir, f"{_named(step)}.energyso", spinor=True, labels=labels)

    def read_scalar_bands(self, case_dir: Path, labels: tuple[str, ...] = (), step: str | None = None) -> BandData:
        """The scalar-relativistic levels (lapw1) of the same bands step."""
        return self._read_bands(case_dir, f"{_named(step)}.energy", spinor=False, labels=labels)

    def _read_bands(self, case_dir: Path, name: str, spinor: bool, labels: tuple[str, ...]) -> BandData:
        case = case_dir.name
        struct = parse_struct((case_dir / f"{case}.struct").read_text())
        energies = parse_energy_files([case_dir / name], struct.n_inequivalent)
        coords = energies.coordinates
        klist, _names = parse_klist_band((case_dir / f"{case}.klist_band").read_text())
        if len(klist) != len(coords) or not np.allclose(np.asarray(klist), coords, atol=1e-6):
            raise CalculationFailed(
                f"{case_dir / name}: its {len(coords)} k-points are not those of {case}.klist_band ({len(klist)})",
                "rerun the bands step (lapw1 -band and lapwso on the same klist_band)",
            )
        in2 = case_dir / f"{case}.in2c"
        in2 = in2 if in2.is_file() else case_dir / f"{case}.in2"
        atoms = struct.to_atoms()
        return BandData(
            kpoints_crystal=np.asarray(klist, float),
            eigenvalues=energies.eigenvalues_ry() * RYDBERG_EV,
            n_electrons=electrons_from_in2(in2.read_text()),
            spinor=spinor,
            reciprocal_cell=atoms.cell.reciprocal()[:] * 2 * np.pi,
            labels=tuple(labels[: len(klist)]),
        )

    def cleanup(self, case_dir: Path) -> int:
        """Delete the eigenvector files (case.vector*, case.vectorso*): the largest, and not needed."""
        freed = 0
        for p in list(case_dir.glob("*.vector*")) + list((self.profile.scratch or case_dir).glob(f"{case_dir.name}.vector*")):
            if p.is_file():
                freed += p.stat().st_size
                p.unlink()
        return freed


def _named(step: str | None) -> str:
    if not step:
        raise TypeError("read the bands of which step? pass step= (the bands step's name)")
    return step


def _height(atoms: Atoms) -> float:
    z = atoms.positions[:, 2]
    metal = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s in METALS][0]
    return float(np.mean([abs(z[i] - z[metal]) for i in range(len(atoms)) if i != metal]))


def _tail(path: Path, lines: int = 6) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(l.strip() for l in text[-lines:] if l.strip()) or "no output"
