"""Quantum ESPRESSO steps: SCF (scalar or spin-orbit), bands on an explicit k list, spin texture.

Every step writes ``<step>.in``, runs, keeps ``<step>.out`` and a copy of the XML as
``<step>.xml`` (pw.x overwrites ``out/<prefix>.save/data-file-schema.xml`` at each run), then
parses both.  A step resumed after max_seconds first sets the interrupted run's output aside as
``<step>.out.1`` (``.2``, … for later interruptions), so its log stays and its CPU time counts.  The code-side choices live in :mod:`.pwinput`; the machine side in :mod:`.profile`.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from ase import Atoms

from ...bands import BandData
from ...errors import (CalculationFailed, MaxSecondsTooShort, PseudopotentialError, ScfNotConverged,
                      WalltimeReached)
from ...presets import Preset
from ...processes import cut_short, deadline, time_left
from ...pseudo import read_upf_header
from ...settings import Settings
from .parsers import (PwStdout, PwXmlOutput, parse_bandsx_sigma_inplane, parse_bandsx_sigma_z, parse_program_clock,
                      parse_pw_stdout, parse_pw_xml)
from .parsers.projwfc import Projections, parse_projwfc_up
from .profile import EspressoProfile, ProgressFn, RunRecord
from .pwinput import OUTDIR, PREFIX, PwJob, build_pw_input, link_pseudopotentials


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

    @property
    def pw_cpu_seconds(self) -> float | None:
        """pw.x CPU time of the step: this run plus the interrupted runs before it (those that
        printed a clock); None if this run printed none."""
        if self.stdout.cpu_seconds is None:
            return None
        return self.stdout.cpu_seconds + sum(s.cpu_seconds for s in self.interrupted if s.cpu_seconds is not None)


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
    capabilities = frozenset({"relax", "scf", "bands", "orbital_projections", "band_map", "phonon_forces"})

    #: what a step runs after pw.x: (the program's name on its clock line, its output file)
    POSTPROCESSING = {"bands_soc": ("BANDS", "spin_texture.out"), "soc_map": ("BANDS", "soc_map_sigma.out"),
                      "bands_sr": ("PROJWFC", "projwfc.out")}

    def __init__(self, profile: EspressoProfile, keep_scratch: bool = False) -> None:
        self.profile = profile
        self.keep_scratch = keep_scratch

    @classmethod
    def from_settings(cls, settings: Settings) -> "EspressoCalculator":
        return cls(EspressoProfile.from_settings(settings), settings.keep_scratch)

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

    def scf(
        self, atoms: Atoms, preset: Preset, directory: Path, pseudo_files: Mapping[str, Path],
        spin_orbit: bool, kmesh: tuple[int, int, int], progress: ProgressFn | None = None,
        step: str | None = None, restart: bool = False, max_seconds: float | None = None,
        stress: bool = True,
    ) -> PwStepResult:
        """``stress=False`` skips the stress tensor (costly with PAW; not needed for phonon forces)."""
        step = step or ("scf_soc" if spin_orbit else "scf_sr")
        check_step_pseudopotentials(pseudo_files, spin_orbit)
        directory.mkdir(parents=True, exist_ok=True)
        names = link_pseudopotentials(directory, pseudo_files)
        job = PwJob("scf", atoms, preset, names, "./pseudo", spin_orbit, kmesh=kmesh, restart=restart,
                    max_seconds=max_seconds, stress=stress)
        nk_full = kmesh[0] * kmesh[1] * kmesh[2]
        return self._run_pw(step, job, directory, progress, pools=min(self.profile.nprocs, nk_full))

    def relax(
        self, atoms: Atoms, preset: Preset, directory: Path, pseudo_files: Mapping[str, Path],
        kmesh: tuple[int, int, int], variable_cell: bool, progress: ProgressFn | None = None,
        step: str = "relax", restart: bool = False, max_seconds: float | None = None,
    ) -> tuple[PwStepResult, Atoms]:
        """Scalar-relativistic relaxation to forces < preset.relax_forc_conv_thr (0.5 mRy/bohr).

        variable_cell=True: vc-relax with cell_dofree='2Dxy' (monolayer: in-plane a and the
        atomic heights, i.e. d); False: fixed cell, positions only (bulk: z at experimental a, c).
        Returns the result and the relaxed structure read from the XML.
        """
        check_step_pseudopotentials(pseudo_files, spin_orbit=False)
        directory.mkdir(parents=True, exist_ok=True)
        names = link_pseudopotentials(directory, pseudo_files)
        job = PwJob("vc-relax" if variable_cell else "relax", atoms, preset, names, "./pseudo", False,
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

    def finished_relax(self, directory: Path, step: str = "relax") -> tuple[PwStepResult, Atoms] | None:
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

    def bands(
        self, atoms: Atoms, preset: Preset, directory: Path, pseudo_files: Mapping[str, Path],
        spin_orbit: bool, kpoints: np.ndarray, nbnd: int, progress: ProgressFn | None = None,
        step: str | None = None,
    ) -> PwStepResult:
        """Non-SCF eigenvalues on ``kpoints`` (crystal) from the SCF density in ``directory``.

        A spin-orbit bands run on a scalar-relativistic (collinear) density is the
        second-variational mode; QE 6.7 allows it with norm-conserving files only.
        """
        step = step or ("bands_soc" if spin_orbit else "bands_sr")
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
        """The spin-orbit bands run in ``directory`` (bands_soc.xml), with <sigma_z> when present."""
        xml = parse_pw_xml(directory / f"{step or 'bands_soc'}.xml")
        b = xml.bands
        bands = BandData(b.kpoints_crystal, b.eigenvalues, b.n_electrons, b.spinor, b.reciprocal_cell,
                         labels=tuple(labels[: len(b.kpoints_crystal)]))
        if (directory / "spin_texture.dat").is_file():
            filband = directory / "spin_texture.dat"
            bands = bands.with_sigma_z(parse_bandsx_sigma_z(filband, bands.eigenvalues),
                                       parse_bandsx_sigma_inplane(filband, bands.eigenvalues))
        return bands

    @classmethod
    def postprocessing_cpu_seconds(cls, directory: Path, step: str) -> float | None:
        """CPU seconds (first MPI process) of the bands.x / projwfc.x run of ``step`` in
        ``directory``, from the program's own clock; None when the step runs none or it did not finish."""
        if step not in cls.POSTPROCESSING:
            return None
        program, name = cls.POSTPROCESSING[step]
        out = Path(directory) / name
        clock = parse_program_clock(out, program) if out.is_file() else None
        return clock.cpu_seconds if clock else None

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
