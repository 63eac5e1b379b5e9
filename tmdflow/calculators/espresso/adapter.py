"""Quantum ESPRESSO steps: SCF (scalar or spin-orbit), relaxation (the monolayer's through the
slab-stress ladder, :mod:`.relax_ladder`), bands on an explicit k list with bands.x spin texture
or projwfc.x orbital weights.  The protocol methods (``scf``, ``relax``, ``bands``) take typed
jobs (tmdflow.calculators.jobs) and choose everything pw.x-specific: the pseudopotentials
(scalar-relativistic / fully relativistic files, tmdflow.pseudo.selection), the number of bands,
the directory in the job's RunLayout (relax/, sr/, soc/), the relaxation's vacuum.

Every step writes ``<step>.in`` (``<step>``: the job's step name, or its ``stem``), runs, keeps ``<step>.out`` and a copy of the XML as
``<step>.xml`` (pw.x overwrites ``out/<prefix>.save/data-file-schema.xml`` at each run), then
parses both.  A step resumed after max_seconds first sets the interrupted run's output aside as
``<step>.out.1`` (``.2``, … for later interruptions), so its log stays and its CPU time counts.  The code-side choices live in :mod:`.pwinput`; the machine side in :mod:`.profile`.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms

from ...bands import BandData
from ...analysis.slab_stress import GPA_TO_KBAR
from ...errors import (CalculationFailed, InputError, MaxSecondsTooShort, PseudopotentialError, ScfNotConverged,
                      WalltimeReached)
from ...kpoints import splitting_kpoints
from ...materials import get_material, parse_formula
from ...presets import Preset
from ...processes import cut_short, deadline, time_left
from ...pseudo import PseudoSet, read_upf_header
from ...pseudo.selection import pseudo_sha256, select_pseudopotentials
from ...restarts import safer_mixing
from ...settings import Settings
from ...structures import build_monolayer, spacegroup_number
from ..base import BUILTIN_CALCULATORS
from ..jobs import BandsJob, InputFileRef, RelaxJob, ScfJob
from .parsers import (PwStdout, PwXmlOutput, parse_bandsx_sigma_inplane, parse_bandsx_sigma_z, parse_program_clock,
                      parse_pw_stdout, parse_pw_xml)
from .parsers.projwfc import Projections, paper_orbital_weights, parse_projwfc_up
from .profile import EspressoProfile, ProgressFn, RunRecord
from .pwinput import OUTDIR, PREFIX, PwJob, build_pw_input, link_pseudopotentials, relax_calculation
from .relax_ladder import relax_monolayer


@dataclass(frozen=True)
class PwStepResult:
    step: str
    directory: Path
    input_text: str
    xml: PwXmlOutput
    stdout: PwStdout
    run: RunRecord
    # the runs stopped at max_seconds before this one resumed the step, oldest first
    interrupted: tuple[PwStdout, ...] = ()
    # -- what the step's task records besides the run (filled by the protocol methods) --
    pseudopotentials: Mapping[str, InputFileRef] = field(default_factory=dict)
    corrections: list = field(default_factory=list)
    relaxed_atoms: Atoms | None = None
    postprocessing_cpu_seconds: float | None = None  # bands.x / projwfc.x after pw.x (their own clock)
    extra: Mapping[str, Any] = field(default_factory=dict)  # outputs added by the step's job (or replaced)
    total_wall_seconds: float | None = None  # a relaxation ladder's: every rung that ran now
    bands: BandData | None = None  # a bands run's eigenvalues read back (scalar bands, band map)
    input_kind = "pw_input"

    @property
    def code_version(self) -> str | None:
        return self.xml.qe_version

    @property
    def forces_ev_per_angstrom(self) -> np.ndarray | None:
        return self.xml.forces_ev_per_angstrom

    @property
    def wall_seconds(self) -> float:
        return self.run.wall_seconds if self.total_wall_seconds is None else self.total_wall_seconds

    def input_files(self) -> dict[str, InputFileRef]:
        return dict(self.pseudopotentials)

    def outputs(self) -> dict[str, Any]:
        """The task's outputs (tmdflow.store.task_outputs): pw.x's parsed run, then the job's extras."""
        x = self.xml
        forces = x.forces_ev_per_angstrom
        out = {
            "total_energy_ev": x.total_energy_ev, "converged": x.converged, "relax_converged": x.relax_converged,
            "n_scf_steps": x.n_scf_steps, "fermi_energy_ev": x.fermi_energy_ev,
            "max_force_ev_per_angstrom": float(np.abs(forces).max()) if forces is not None else None,
            # diagonal of the stress tensor (kbar, of the final structure; scf and relax steps)
            "stress_diagonal_kbar": ([float(v) * GPA_TO_KBAR for v in np.diag(x.stress_gpa)]
                                     if x.stress_gpa is not None else None),
            "n_electrons": x.bands.n_electrons, "n_kpoints": len(x.bands.kpoints_crystal),
            # non-SCF runs: final eigenvalues short of the Davidson threshold (None for SCF runs,
            # where pw.x prints the same line for transient early iterations)
            "unconverged_eigenvalues": (self.stdout.unconverged_eigenvalues
                                        if x.calculation in ("bands", "nscf") else None),
            # this run and, for a step resumed after max_seconds, the interrupted runs before it
            "pw_cpu_seconds": self.pw_cpu_seconds, "pw_runs_interrupted": len(self.interrupted),
            # bands.x (spin texture, band map) / projwfc.x (orbital weights) after pw.x; else None
            "postprocessing_cpu_seconds": self.postprocessing_cpu_seconds,
        }
        out.update(self.extra)
        return out

    @property
    def pw_cpu_seconds(self) -> float | None:
        """pw.x CPU time of the step: this run plus the interrupted runs before it (those that
        printed a clock); None if this run printed none."""
        if self.stdout.cpu_seconds is None:
            return None
        return self.stdout.cpu_seconds + sum(s.cpu_seconds for s in self.interrupted if s.cpu_seconds is not None)


@dataclass(frozen=True)
class WannierRunResult:
    """The wannier_map step's run: the pw.x grid run (its task document), the model, Wannier90's log."""

    pw: PwStepResult
    model: Any  # tmdflow.analysis.wannier.WannierModel
    wout: Any  # parsers.wannier90.WannierRun


def interrupted_outputs(directory: Path, step: str) -> list[Path]:
    """``<step>.out.1``, ``.2``, …: the outputs of the runs of a step that stopped at max_seconds."""
    found = []
    while (path := Path(directory) / f"{step}.out.{len(found) + 1}").is_file():
        found.append(path)
    return found


def _set_aside_output(directory: Path, step: str, restart: bool) -> None:
    """Before a run: on a restart keep the interrupted run's output as the next ``<step>.out.<n>``;
    on a fresh run remove those left by an earlier execution (they are not this run's history)."""
    if restart:
        out = directory / f"{step}.out"
        if out.is_file() and "Program PWSCF" in out.read_text(errors="replace"):
            out.rename(directory / f"{step}.out.{len(interrupted_outputs(directory, step)) + 1}")
    else:
        for path in interrupted_outputs(directory, step):
            path.unlink()


def _parse_interrupted(directory: Path, step: str) -> tuple[PwStdout, ...]:
    return tuple(parse_pw_stdout(path) for path in interrupted_outputs(directory, step))


def _stopped_at_deadline(record: RunRecord, directory: Path) -> None:
    """bands.x/projwfc.x have no max_seconds: stopped at the launcher's deadline, the step is
    resumed (run again) by the next launch instead of failing."""
    end = deadline()
    if end is not None and record.returncode == -signal.SIGTERM and time.time() >= end - 1:
        raise WalltimeReached(
            f"{record.program} stopped in {directory} at the end of the launcher's --max-seconds",
            "the step runs again in the next launch (tmdflow launch does this)")


def _tail(path: Path, lines: int = 8) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.is_file() else []
    return " | ".join(l.strip() for l in text[-lines:] if l.strip()) or "no output"


def _clock(output: Path, program: str) -> float | None:
    clock = parse_program_clock(output, program) if output.is_file() else None
    return clock.cpu_seconds if clock else None


def _a_and_d(atoms: Atoms) -> tuple[float, float]:
    """A monolayer's lattice constant and metal-chalcogen height (Angstrom)."""
    z = atoms.positions[:, 2]
    return float(np.linalg.norm(atoms.cell[0])), float(np.mean(np.abs(z[1:] - z[0])))


def valence_electrons(atoms: Atoms, pseudo_files: Mapping[str, Path]) -> float:
    zval = {el: read_upf_header(path).z_valence for el, path in pseudo_files.items()}
    return float(sum(zval[s] for s in atoms.get_chemical_symbols()))


def check_step_pseudopotentials(pseudo_files: Mapping[str, Path], spin_orbit: bool) -> None:
    """Refuse files pw.x cannot use for this step, before it runs.

    spin-orbit step: every file fully relativistic.  Scalar step: fully relativistic files only
    when norm-conserving (pw.x 6.7 averages those; it refuses FR PAW/US: "FR-PP please use
    lspinorb=.true.").
    """
    for el, path in pseudo_files.items():
        header = read_upf_header(path)
        if spin_orbit and not header.fully_relativistic:
            raise PseudopotentialError(
                f"{Path(path).name} ({el}) is scalar-relativistic but this is a spin-orbit step",
                "use a fully relativistic pseudopotential (UPF relativistic=\"full\" / has_so=\"T\")",
            )
        if not spin_orbit and header.fully_relativistic and not header.is_norm_conserving:
            raise PseudopotentialError(
                f"{Path(path).name} ({el}) is a fully relativistic {header.pseudo_type} file; pw.x can "
                "average only norm-conserving ones for a scalar-relativistic step",
                "use the rel=1 file of the same recipe for scalar-relativistic steps",
            )


class EspressoCalculator:
    name = "espresso"
    uses_pseudopotentials = True
    #: what this code can run (tmdflow.steps.registry derives the steps it supports)
    capabilities = BUILTIN_CALCULATORS["espresso"].capabilities

    #: the spin texture of the splitting bands (<sigma_x,y,z>: bands.x files spin_texture.dat{,.1,.2,.3})
    SPIN_TEXTURE = "spin_texture.dat"
    ORBITAL_PROJECTIONS = "proj.projwfc_up"  # projwfc.x's orbital weights, beside the bands run

    def __init__(self, profile: EspressoProfile, keep_scratch: bool = False, settings: Settings | None = None) -> None:
        self.profile = profile
        self.keep_scratch = keep_scratch
        self.settings = settings  # where the pseudopotentials come from (pseudo_dir, user_pseudo_dir, ld1.x)

    @classmethod
    def from_settings(cls, settings: Settings) -> "EspressoCalculator":
        return cls(EspressoProfile.from_settings(settings), settings.keep_scratch, settings)

    # -- pseudopotentials ------------------------------------------------------------------
    def pseudopotentials(self, formula: str, preset: Preset, rels: tuple[int, ...] = (1, 2)) -> PseudoSet:
        if self.settings is None:
            raise RuntimeError("EspressoCalculator without settings cannot select pseudopotentials: "
                               "build it with EspressoCalculator.from_settings")
        return select_pseudopotentials(get_material(formula), preset, self.settings, rels=rels)

    def input_file_digests(self, formula: str, preset: Preset) -> dict[str, list[str]]:
        """SHA-256 of every pseudopotential file the material's chain uses on this worker (both
        relativistic kinds): part of the result's identity (tmdflow.identity.result_hash)."""
        pseudos = self.pseudopotentials(formula, preset, rels=(1, 2))
        files: dict[str, list[str]] = {}
        for table in (pseudos.scalar, pseudos.full):
            for el, pf in table.items():
                files.setdefault(el, []).append(pseudo_sha256(pseudos, el, pf.path))
        return files

    @staticmethod
    def pseudo_files(pseudos: PseudoSet, formula: str, preset: Preset, spin_orbit: bool) -> dict[str, Path]:
        """Files of a spin-orbit run: fully relativistic.  Of a scalar-relativistic run: rel=1; in
        the second-variational mode the same fully relativistic NC files as the spin-orbit run
        (pw.x averages them), so the density and the spin-orbit Hamiltonian match."""
        full = spin_orbit or preset.spin_orbit_mode == "second_variational"
        return {el: pseudos.for_element(el, spin_orbit=full).path for el in get_material(formula).elements}

    def _files(self, job, spin_orbit: bool) -> tuple[PseudoSet, dict[str, Path]]:
        pseudos = self.pseudopotentials(job.formula, job.preset, rels=(2,) if spin_orbit else (1, 2))
        return pseudos, self.pseudo_files(pseudos, job.formula, job.preset, spin_orbit)

    @staticmethod
    def _refs(pseudos: PseudoSet, files: Mapping[str, Path]) -> dict[str, InputFileRef]:
        return {el: InputFileRef(p.name, pseudo_sha256(pseudos, el, p), pseudos.source_of(el)) for el, p in files.items()}

    @staticmethod
    def valence_electrons(atoms: Atoms, pseudo_files: Mapping[str, Path]) -> float:
        return valence_electrons(atoms, pseudo_files)

    # -- what the shared flow asks -------------------------------------------------------------
    @staticmethod
    def scf_retry_changes(preset: Preset) -> dict:
        """Safer mixing for a retry of an SCF that did not converge: half mixing_beta, at least
        100 (or twice as many) iterations (tmdflow.restarts.safer_mixing)."""
        return safer_mixing(preset)

    @staticmethod
    def splitting_kpoints(atoms: Atoms, path_points: int) -> tuple[np.ndarray, list[str]]:
        """The spin-orbit bands' k list (crystal, floats; the path from ASE, tmdflow.kpoints)."""
        return splitting_kpoints(atoms.cell[:], path_points)

    def _directory(self, job, spin_orbit: bool) -> Path:
        """Where a run goes in the layout: the spin-orbit runs in soc/, scalar ones in sr/ (the
        second-variational mode's scalar SCF in soc/, where the spin-orbit bands read its density)."""
        if job.directory is not None:
            return Path(job.directory)
        second_variational = job.preset.spin_orbit_mode == "second_variational"
        if isinstance(job, ScfJob):
            return job.layout.spin_orbit if spin_orbit else job.layout.scalar_scf(second_variational)
        return job.layout.spin_orbit if spin_orbit else job.layout.scalar

    def scf(self, job: ScfJob) -> PwStepResult:
        pseudos, files = self._files(job, job.spin_orbit)
        result = self.pw_scf(job.atoms, job.preset, self._directory(job, job.spin_orbit), files, job.spin_orbit,
                             job.kmesh, progress=job.progress, step=job.name, restart=job.restart,
                             max_seconds=job.max_seconds, stress=job.stress)
        return dataclasses.replace(result, pseudopotentials=self._refs(pseudos, files))

    def scf_input_files(self, job: ScfJob) -> dict[str, InputFileRef]:
        """The pseudopotential files an SCF of ``job`` reads (what its task records), without running it."""
        pseudos, files = self._files(job, job.spin_orbit)
        return self._refs(pseudos, files)

    @staticmethod
    def finished_forces(job: ScfJob) -> tuple[np.ndarray, str | None, float | None] | None:
        """Forces (eV/Angstrom), QE version and pw.x CPU seconds of the converged SCF already in the
        job's directory for exactly the job's positions (a resumed phonon step reads, not reruns,
        it); None when there is none."""
        directory, cell = Path(job.directory), job.atoms
        xml = directory / f"{job.name}.xml"
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
            cpu = parse_pw_stdout(directory / f"{job.name}.out").cpu_seconds
        except Exception:  # the text output is provenance only; the XML holds the forces
            cpu = None
        return out.forces_ev_per_angstrom, out.qe_version, cpu

    def relax(self, job: RelaxJob) -> PwStepResult:
        """A monolayer (``variable_cell``): vc-relax of a and d at the cell-relaxation cut-offs,
        repeated at higher cut-off while the slab's sigma_zz shows a basis-set stress
        (:mod:`.relax_ladder`), in the preset's ``relax_vacuum`` when set (a and d do not feel
        the vacuum beyond ~10 A, docs/performance.md) and rebuilt in its ``vacuum`` after.  Bulk:
        the positions at fixed cell.  The symmetry must survive (checked before any rebuild)."""
        preset, formula = job.preset, job.formula
        pseudos, files = self._files(job, spin_orbit=False)
        refs = self._refs(pseudos, files)
        atoms, corrections = job.atoms, []
        relax_vacuum = preset.relax_vacuum if job.variable_cell else None
        if relax_vacuum is not None:
            atoms = build_monolayer(formula, *_a_and_d(atoms), relax_vacuum)
        if job.variable_cell:
            relaxation = relax_monolayer(self, atoms, preset, job.layout.root, files, job.kmesh, corrections,
                                         restart=job.restart, max_seconds=job.max_seconds, progress=job.progress,
                                         step=job.step)
            check = relaxation.check
            result = dataclasses.replace(relaxation.result, total_wall_seconds=relaxation.wall_seconds, extra={
                # the step's cost is that of every rung; each rung is recorded
                "pw_cpu_seconds": relaxation.pw_cpu_seconds, "pw_runs_interrupted": relaxation.interrupted_runs,
                "relax_rungs": [r.as_output() for r in relaxation.rungs],
                "slab_stress_kbar": {"sigma_xx": check.sigma_xx_kbar, "sigma_zz": check.sigma_zz_kbar,
                                     "sigma_zz_residual_forces": check.residual_force_kbar,
                                     "sigma_zz_basis": check.sigma_zz_basis_kbar,
                                     "threshold": check.threshold_kbar}})
            relaxed = relaxation.atoms
        else:
            result, relaxed = self.pw_relax(atoms, preset, job.layout.step_directory(job.step), files, job.kmesh,
                                            variable_cell=False, progress=job.progress, step=job.step,
                                            restart=job.restart, max_seconds=job.max_seconds)
        sg = spacegroup_number(relaxed, symprec=1e-3)  # 2Dxy + symmetric forces keep it
        if sg != job.expected_spacegroup:
            raise InputError(f"relaxation broke the symmetry: space group {sg}, expected {job.expected_spacegroup}",
                             f"inspect {job.layout.step_directory(job.step)}")
        if relax_vacuum is not None:  # the later steps run in the preset's vacuum
            relaxed = build_monolayer(formula, *_a_and_d(relaxed), preset.vacuum)
        return dataclasses.replace(result, pseudopotentials=refs, corrections=corrections, relaxed_atoms=relaxed)

    def bands(self, job: BandsJob) -> PwStepResult:
        """Non-SCF eigenvalues on ``job.kpoints`` from the SCF density in the run's directory
        (an SCF of ``job.potential_from`` must have run there), then what the job asks:
        ``spin_texture`` "full" (bands.x <sigma_x,y,z>, monolayers only: in a bulk 2H every level
        is a Kramers pair whose <sigma> is arbitrary, bands.x would cost 1-2.5 min for nothing,
        docs/physics.md) or "sigma_z" (``<step>_sigma.dat``), ``orbital_projections``
        (projwfc.x); the wavefunction scratch is deleted at the end."""
        preset, atoms, step = job.preset, job.atoms, job.step
        directory = self._directory(job, job.spin_orbit)
        if job.potential_from and not any((directory / f"{s}.xml").is_file() for s in job.potential_from):
            kind, remedy = (("spin-orbit", "self-consistent spin-orbit step") if job.spin_orbit
                            else ("scalar-relativistic", "scalar-relativistic SCF step"))
            raise InputError(f"{step}: no {kind} SCF in {directory}", f"run the workflow's {remedy} first")
        pseudos, files = self._files(job, job.spin_orbit)
        nel = int(round(valence_electrons(atoms, files)))
        nbnd = nel + 2 * preset.extra_bands if job.spin_orbit else nel // 2 + preset.extra_bands
        result = self.pw_bands(atoms, preset, directory, files, spin_orbit=job.spin_orbit,
                               kpoints=np.asarray(job.kpoints, dtype=float), nbnd=nbnd, progress=job.progress, step=step)
        extra: dict[str, Any] = {}
        post, bands = None, None
        if job.spin_texture == "sigma_z":  # a spin-orbit run beside the splitting bands: its own file
            sigma = f"{step}_sigma.dat"
            self.spin_texture(directory, result, progress=job.progress, filband=sigma, in_plane=False)
            post = _clock(directory / f"{Path(sigma).stem}.out", "BANDS")
            bands = self.read_bands(directory, step, job.labels, sigma_file=sigma)
        elif job.spin_orbit:  # the splitting bands
            for stale in directory.glob(f"{Path(self.SPIN_TEXTURE).stem}.*"):  # old spins must not pair with new bands
                stale.unlink()
            extra["bandsx_wall_seconds"] = None
            if job.spin_texture == "full" and job.dimensionality == "monolayer":
                t0 = time.monotonic()
                self.spin_texture(directory, result, progress=job.progress)
                extra["bandsx_wall_seconds"] = time.monotonic() - t0
                post = _clock(directory / f"{Path(self.SPIN_TEXTURE).stem}.out", "BANDS")
        if job.orbital_projections:
            self.orbital_projections(directory, progress=job.progress)
            post = _clock(directory / "projwfc.out", "PROJWFC")
        if not job.spin_orbit:
            bands = self.read_bands(directory, step, job.labels)
        extra["scratch_freed_bytes"] = self.cleanup(directory)
        return dataclasses.replace(result, pseudopotentials=self._refs(pseudos, files), extra=extra, bands=bands,
                                   postprocessing_cpu_seconds=post)

    def wannier_bands(self, job: BandsJob, grid: int, frozen_above_cbm_ev: float) -> "WannierRunResult":
        """The Wannier model of the spin-orbit bands (tmdflow.calculators.espresso.wannier): pw.x
        ``bands`` on the full ``grid`` x ``grid`` x 1 mesh from the spin-orbit SCF density in the
        run's directory, pw2wannier90.x, wannier90.x; the model parsed from its files.  The
        wavefunction scratch is deleted at the end; the model's files stay (``wannier_*``)."""
        from ...analysis.wannier import wannier_model
        from . import wannier as w
        from .parsers import wannier90 as w90

        preset, atoms, step = job.preset, job.atoms, job.step
        directory = self._directory(job, True)
        if job.potential_from and not any((directory / f"{s}.xml").is_file() for s in job.potential_from):
            raise InputError(f"{step}: no spin-orbit SCF in {directory}", "run the workflow's self-consistent "
                             "spin-orbit step first")
        for command in (self.profile.pw2wannier90_command, self.profile.wannier90_command):
            self.profile.argv(command, parallel=False)  # missing programs fail before pw.x runs
        pseudos, files = self._files(job, True)
        nel = int(round(valence_electrons(atoms, files)))
        excluded = w.excluded_bands(nel)
        result = self.pw_bands(atoms, preset, directory, files, spin_orbit=True, kpoints=w.grid_kpoints(grid),
                               nbnd=nel + w.WANNIER_EXTRA_BANDS, progress=job.progress, step=step)
        eig = np.asarray(result.xml.bands.eigenvalues)
        frozen = w.frozen_window_top(eig, nel, excluded, frozen_above_cbm_ev)
        (directory / f"{w.SEED}.win").write_text(w.win_text(atoms, job.formula, grid, eig.shape[1], excluded, frozen))
        (directory / "pw2wannier90.in").write_text(w.pw2wannier90_text())
        # wannier90.x takes the seed name as its argument; pw2wannier90.x reads -in pw2wannier90.in
        for label, command, input_name, args, output, parallel in (
                ("wannier90 -pp", self.profile.wannier90_command, "", ("-pp", w.SEED), "wannier90_pp.out", False),
                ("pw2wannier90", self.profile.pw2wannier90_command, "pw2wannier90.in", None, "pw2wannier90.out", True),
                ("wannier90", self.profile.wannier90_command, "", (w.SEED,), "wannier90.out", False)):
            record = self.profile.run(command, directory, input_name, output, parallel=parallel,
                                      progress=job.progress, label=label, deadline=deadline(), args=args)
            _stopped_at_deadline(record, directory)
            if record.returncode != 0:
                wout = directory / f"{w.SEED}.wout"
                raise CalculationFailed(f"{label} failed (exit {record.returncode}) in {directory}: "
                                        f"{_tail(directory / output)}",
                                        f"read {directory / output}" + (f" and {wout}" if wout.is_file() else ""))
        run = w90.parse_wout(directory / f"{w.SEED}.wout")
        if not run.completed:
            raise CalculationFailed(f"wannier90.x did not finish in {directory}", f"read {directory / (w.SEED + '.wout')}")
        hr = w90.parse_hr(directory / f"{w.SEED}_hr.dat")
        kq, u = w90.parse_u_matrices(directory / f"{w.SEED}_u.mat")
        u_dis_file = directory / f"{w.SEED}_u_dis.mat"
        u_dis = w90.parse_u_matrices(u_dis_file)[1] if u_dis_file.is_file() else None
        model = wannier_model(hr, w90.parse_wsvec(directory / f"{w.SEED}_wsvec.dat", hr.matrices.shape[1]),
                              w90.parse_spn_formatted(directory / f"{w.SEED}.spn"), u, u_dis, kq, excluded, grid)
        model.save(directory / w.MODEL_FILE)
        freed = self.cleanup(directory)
        for big in ("mmn", "amn", "spn", "eig"):  # inputs of wannier90.x, rebuilt by a rerun (GBs at dense grids)
            f = directory / f"{w.SEED}.{big}"
            if f.is_file() and not self.keep_scratch:
                freed += f.stat().st_size
                f.unlink()
        result = dataclasses.replace(result, pseudopotentials=self._refs(pseudos, files),
                                     extra={"scratch_freed_bytes": freed, "wannier_frozen_top_ev": frozen,
                                            "wannier_total_spread_angstrom2": run.total_spread_angstrom2,
                                            "wannier_disentanglement_converged": run.disentanglement_converged})
        return WannierRunResult(result, model, run)

    def wannier_model(self, layout, step: str):
        """The Wannier model ``step`` left in the layout (tmdflow's ``wannier_model.npz``), None
        when it did not run."""
        from ...analysis.wannier import WannierModel
        from . import wannier as w

        path = layout.spin_orbit / w.MODEL_FILE
        if not (path.is_file() and (layout.spin_orbit / f"{step}.xml").is_file()):
            return None
        return WannierModel.load(path)

    def orbital_weights(self, directory: Path, formula: str) -> dict | None:
        """The paper's orbital weights (M d_z2, M d_xy/d_x2-y2, X p_z, X p_x/p_y) of the bands run in
        ``directory`` from projwfc.x's file; None when there is none."""
        path = Path(directory) / self.ORBITAL_PROJECTIONS
        if not path.is_file():
            return None
        metal, chalcogen = parse_formula(formula)
        return paper_orbital_weights(parse_projwfc_up(path), metal, chalcogen)

    def scalar_bands(self, layout, step: str, formula: str) -> tuple[BandData | None, dict | None]:
        """The scalar-relativistic bands run ``step`` left in the layout and its orbital weights,
        (None, None) when it did not run."""
        directory = layout.scalar
        if not (directory / f"{step}.xml").is_file():
            return None, None
        return self.read_bands(directory, step, layout.read_labels(directory)), self.orbital_weights(directory, formula)

    def band_map(self, layout, step: str) -> BandData | None:
        """The spin-orbit band map ``step`` left in the layout (with <sigma_z>), None when it did not run."""
        directory = layout.spin_orbit
        if not (directory / f"{step}.xml").is_file():
            return None
        return self.read_bands(directory, step, sigma_file=f"{step}_sigma.dat")

    @staticmethod
    def bands_directory(root: Path, formula: str) -> Path:
        """The spin-orbit SCF and bands run in ``<root>/soc`` (pw.x reads the SCF density there)."""
        return Path(root) / "soc"

    def check_executables(self, spin_texture: bool, projections: bool = False) -> None:
        """Fail before any expensive work when pw.x / bands.x / projwfc.x / MPI are missing."""
        self.profile.argv(self.profile.pw_command)
        if spin_texture:
            self.profile.argv(self.profile.bands_command)
        if projections:
            self.profile.argv(self.profile.projwfc_command)

    # -- steps -----------------------------------------------------------------------------
    def _run_pw(self, step: str, job: PwJob, directory: Path, progress: ProgressFn | None, pools: int) -> PwStepResult:
        left = time_left()  # under a launcher with a time budget: every pw.x run gets the time left
        if left is not None:
            job = dataclasses.replace(job, max_seconds=max(0.5, min(job.max_seconds or left, left)))
        text = build_pw_input(job)
        (directory / f"{step}.in").write_text(text)
        _set_aside_output(directory, step, job.restart)
        started = time.time()
        record = self.profile.run(
            self.profile.pw_command, directory, f"{step}.in", f"{step}.out",
            progress=progress, label=step, pools=pools,
        )
        out_file = directory / f"{step}.out"
        xml_src = directory / OUTDIR / f"{PREFIX}.save" / "data-file-schema.xml"
        # the bands step must not delete the SCF's XML (pw.x reads it), so "written by this run"
        # is decided by modification time; kept for failed runs too
        if xml_src.is_file() and xml_src.stat().st_mtime >= started - 1:
            shutil.copyfile(xml_src, directory / f"{step}.xml")
        stdout = parse_pw_stdout(out_file) if "Program PWSCF" in out_file.read_text(errors="replace") else None
        if stdout is not None and stdout.walltime_exceeded and stdout.scf_iterations_run == 0 and cut_short(job.max_seconds):
            # the launcher had only this much time left: the next launch resumes it with its whole budget
            raise WalltimeReached(
                f"{step}: pw.x reached max_seconds = {job.max_seconds:g} s (the launcher's time left) in {directory} "
                "before its first SCF iteration", "the step is resumed by the next launch (tmdflow launch does this)")
        if stdout is not None and stdout.walltime_exceeded and stdout.scf_iterations_run == 0:
            # stopped while starting up: a restart under the same limit would repeat the start-up
            # and stop again, detour after detour
            raise MaxSecondsTooShort(
                f"{step}: pw.x reached max_seconds = {job.max_seconds:g} s in {directory} before starting an "
                f"SCF iteration (it ran {stdout.wall_seconds or 0:.0f} s); resuming under the same limit would "
                "stop again without progress",
                "raise max_seconds (tmdflow launch --max-seconds, or the queue walltime and its margin) well above "
                "this step's start-up time, then run the step again (tmdflow rerun)")
        if stdout is not None and stdout.walltime_exceeded:
            raise WalltimeReached(
                f"{step}: pw.x stopped at max_seconds in {directory}; a checkpoint was written",
                "the step is resumed with restart_mode='restart' (tmdflow launch does this)",
            )
        if stdout is not None and stdout.converged is False:
            raise ScfNotConverged(
                f"{step}: SCF not converged after {job.preset.electron_maxstep} iterations in {directory}",
                "lower mixing_beta (e.g. 0.2) and/or raise electron_maxstep in the preset overrides",
            )
        if record.returncode != 0 or stdout is None or stdout.error or not stdout.job_done:
            detail = stdout.error if stdout and stdout.error else _tail(out_file)
            raise CalculationFailed(
                f"{step}: pw.x failed (exit {record.returncode}) in {directory}: {detail}",
                f"read {out_file}",
            )
        if not (directory / f"{step}.xml").is_file():
            raise CalculationFailed(f"{step}: pw.x wrote no XML in {xml_src.parent}", f"read {out_file}")
        xml = parse_pw_xml(directory / f"{step}.xml")
        return PwStepResult(step, directory, text, xml, stdout, record, _parse_interrupted(directory, step))

    def pw_scf(
        self, atoms: Atoms, preset: Preset, directory: Path, pseudo_files: Mapping[str, Path],
        spin_orbit: bool, kmesh: tuple[int, int, int], progress: ProgressFn | None = None,
        step: str = "scf", restart: bool = False, max_seconds: float | None = None,
        stress: bool = True,
    ) -> PwStepResult:
        """One pw.x SCF named ``step`` in ``directory`` with these files.  ``stress=False`` skips the
        stress tensor (costly with PAW; not needed for phonon forces)."""
        check_step_pseudopotentials(pseudo_files, spin_orbit)
        directory.mkdir(parents=True, exist_ok=True)
        names = link_pseudopotentials(directory, pseudo_files)
        job = PwJob("scf", atoms, preset, names, "./pseudo", spin_orbit, kmesh=kmesh, restart=restart,
                    max_seconds=max_seconds, stress=stress)
        nk_full = kmesh[0] * kmesh[1] * kmesh[2]
        return self._run_pw(step, job, directory, progress, pools=min(self.profile.nprocs, nk_full))

    def pw_relax(
        self, atoms: Atoms, preset: Preset, directory: Path, pseudo_files: Mapping[str, Path],
        kmesh: tuple[int, int, int], variable_cell: bool, step: str, progress: ProgressFn | None = None,
        restart: bool = False, max_seconds: float | None = None,
    ) -> tuple[PwStepResult, Atoms]:
        """Scalar-relativistic relaxation to forces < preset.relax_forc_conv_thr (0.5 mRy/bohr).

        variable_cell=True: vc-relax with cell_dofree='2Dxy' (monolayer: in-plane a and the
        atomic heights, i.e. d); False: fixed cell, positions only (bulk: z at experimental a, c).
        ``step`` (the step's name) is the files' stem.  Returns the result and the relaxed
        structure read from the XML.
        """
        check_step_pseudopotentials(pseudo_files, spin_orbit=False)
        directory.mkdir(parents=True, exist_ok=True)
        names = link_pseudopotentials(directory, pseudo_files)
        job = PwJob(relax_calculation(variable_cell), atoms, preset, names, "./pseudo", False,
                    kmesh=kmesh, cell_dofree="2Dxy" if variable_cell else None, restart=restart,
                    max_seconds=max_seconds)
        nk = kmesh[0] * kmesh[1] * kmesh[2]
        result = self._run_pw(step, job, directory, progress, pools=min(self.profile.nprocs, nk))
        if result.xml.relax_converged is False:
            raise CalculationFailed(
                f"{step}: the BFGS optimisation did not converge in {directory}",
                "check the starting structure, or loosen the preset's relax_forc_conv_thr / "
                "relax_press_conv_thr (overrides); a rerun starts again from the initial geometry",
            )
        return result, self._relaxed_atoms(result.xml)

    @staticmethod
    def _relaxed_atoms(xml: PwXmlOutput) -> Atoms:
        return Atoms(xml.symbols, positions=xml.positions_angstrom, cell=xml.cell_angstrom, pbc=True)

    def finished_relax(self, directory: Path, step: str) -> tuple[PwStepResult, Atoms] | None:
        """The relaxation already finished in ``directory`` (read from its files, nothing runs), or
        None when there is none: no output, a run stopped at max_seconds, an error, or BFGS not
        converged.  A resumed step uses it to skip what was done before the interruption."""
        inp, out, xml_file = (Path(directory) / f"{step}.{ext}" for ext in ("in", "out", "xml"))
        if not (inp.is_file() and out.is_file() and xml_file.is_file()):
            return None
        if "Program PWSCF" not in out.read_text(errors="replace"):
            return None
        stdout = parse_pw_stdout(out)
        if not stdout.job_done or stdout.walltime_exceeded or stdout.error:
            return None
        xml = parse_pw_xml(xml_file)
        if xml.relax_converged is not True:
            return None
        record = RunRecord(self.profile.pw_command, (), Path(directory), 0, float(stdout.wall_seconds or 0.0))
        result = PwStepResult(step, Path(directory), inp.read_text(), xml, stdout, record,
                              _parse_interrupted(directory, step))
        return result, self._relaxed_atoms(xml)

    def pw_bands(
        self, atoms: Atoms, preset: Preset, directory: Path, pseudo_files: Mapping[str, Path],
        spin_orbit: bool, kpoints: np.ndarray, nbnd: int, progress: ProgressFn | None = None,
        step: str = "bands",
    ) -> PwStepResult:
        """Non-SCF eigenvalues on ``kpoints`` (crystal) from the SCF density in ``directory``; files
        named after ``step``.

        A spin-orbit bands run on a scalar-relativistic (collinear) density is the
        second-variational mode; QE 6.7 allows it with norm-conserving files only.
        """
        check_step_pseudopotentials(pseudo_files, spin_orbit)
        names = link_pseudopotentials(directory, pseudo_files)
        job = PwJob("bands", atoms, preset, names, "./pseudo", spin_orbit, kpoints=kpoints, nbnd=nbnd)
        return self._run_pw(step, job, directory, progress, pools=min(self.profile.nprocs, len(kpoints)))

    def spin_texture(self, directory: Path, bands: PwStepResult, progress: ProgressFn | None = None,
                     filband: str = "spin_texture.dat", in_plane: bool = True) -> np.ndarray:
        """<sigma_z> (-1..1) per k-point and band of the last bands run, from bands.x lsigma(3);
        with ``in_plane`` also <sigma_x>, <sigma_y> (lsigma(1), lsigma(2): the ``.1``, ``.2``
        files, read by read_spin_orbit_bands): bands.x takes 1.3x (quick, 5 k) to 2.3x (paper, 96 k) longer.
        bands.x runs on the profile's MPI processes with plane-wave distribution (no pools): output
        identical byte for byte to a serial run, 1.9x faster on 2 cores (docs/performance.md).

        ``filband``: the bands step writes spin_texture.dat; other spin-orbit runs in the same
        directory (the splitting map) use their own name so that nothing is overwritten."""
        stem = Path(filband).stem
        components = (1, 2, 3) if in_plane else (3,)
        text = (
            "&BANDS\n"
            f"  prefix = '{PREFIX}'\n  outdir = '{OUTDIR}'\n  filband = '{filband}'\n"
            + "".join(f"  lsigma({i}) = .true.\n" for i in components)
            + "  lsym = .false.\n  no_overlap = .true.\n/\n"
        )
        (directory / f"{stem}.in").write_text(text)
        record = self.profile.run(
            self.profile.bands_command, directory, f"{stem}.in", f"{stem}.out",
            progress=progress, label=stem, deadline=deadline(),
        )
        _stopped_at_deadline(record, directory)
        if record.returncode != 0:
            raise CalculationFailed(
                f"bands.x failed (exit {record.returncode}) in {directory}: {_tail(directory / f'{stem}.out')}",
                f"read {directory / f'{stem}.out'}",
            )
        return parse_bandsx_sigma_z(directory / filband, bands.xml.bands.eigenvalues)

    def orbital_projections(self, directory: Path, progress: ProgressFn | None = None) -> Projections:
        """projwfc.x on the last (scalar-relativistic) run in ``directory``: |<phi_lm|psi_nk>|^2
        on real spherical harmonics, kept in ``proj.projwfc_up``.  Parallel like bands.x (identical
        ``proj.projwfc_up`` to a serial run)."""
        text = (f"&PROJWFC\n  prefix = '{PREFIX}'\n  outdir = '{OUTDIR}'\n  filproj = 'proj'\n"
                "  lsym = .false.\n/\n")
        (directory / "projwfc.in").write_text(text)
        record = self.profile.run(self.profile.projwfc_command, directory, "projwfc.in", "projwfc.out",
                                  progress=progress, label="projwfc", deadline=deadline())
        _stopped_at_deadline(record, directory)
        if record.returncode != 0 or not (directory / "proj.projwfc_up").is_file():
            raise CalculationFailed(
                f"projwfc.x failed (exit {record.returncode}) in {directory}: {_tail(directory / 'projwfc.out')}",
                f"read {directory / 'projwfc.out'}",
            )
        return parse_projwfc_up(directory / "proj.projwfc_up")

    def read_bands(self, directory: Path, step: str, labels: tuple[str, ...] = (),
                   sigma_file: str | None = None) -> BandData:
        """Any bands step's eigenvalues (``<step>.xml``), with <sigma_z> from ``sigma_file``."""
        b = parse_pw_xml(directory / f"{step}.xml").bands
        bands = BandData(b.kpoints_crystal, b.eigenvalues, b.n_electrons, b.spinor, b.reciprocal_cell,
                         labels=tuple(labels[: len(b.kpoints_crystal)]))
        if sigma_file and (directory / sigma_file).is_file():
            bands = bands.with_sigma_z(parse_bandsx_sigma_z(directory / sigma_file, bands.eigenvalues))
        return bands

    def read_spin_orbit_bands(self, directory: Path, labels: tuple[str, ...] = (), step: str | None = None) -> BandData:
        """The spin-orbit bands run ``step`` in ``directory`` (``<step>.xml``), with <sigma> when present."""
        if not step:
            raise TypeError("read the bands of which step? pass step= (the bands step's name)")
        xml = parse_pw_xml(directory / f"{step}.xml")
        b = xml.bands
        bands = BandData(b.kpoints_crystal, b.eigenvalues, b.n_electrons, b.spinor, b.reciprocal_cell,
                         labels=tuple(labels[: len(b.kpoints_crystal)]))
        if (directory / self.SPIN_TEXTURE).is_file():
            filband = directory / self.SPIN_TEXTURE
            bands = bands.with_sigma_z(parse_bandsx_sigma_z(filband, bands.eigenvalues),
                                       parse_bandsx_sigma_inplane(filband, bands.eigenvalues))
        return bands

    @staticmethod
    def postprocessing_cpu_seconds(output: Path, program: str) -> float | None:
        """CPU seconds (first MPI process) of a bands.x / projwfc.x run (``program``: BANDS,
        PROJWFC) from its own clock in ``output``; None when there is none or it did not finish."""
        return _clock(Path(output), program)

    def cleanup(self, directory: Path) -> int:
        """Delete wavefunction scratch (keeps XML and charge density for restarts); bytes freed."""
        if self.keep_scratch:
            return 0
        freed = 0
        out = directory / OUTDIR
        for pattern in ("*.wfc*", "*.mix*", f"{PREFIX}.save/wfc*.dat", f"{PREFIX}.save/wfc*.hdf5"):
            for f in out.glob(pattern):
                freed += f.stat().st_size
                f.unlink()
        return freed
