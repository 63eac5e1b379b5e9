"""pw.x ``data-file-schema.xml`` (QE >= 6.2 'qes' schema; read the same way for 6.x and 7.x).

Units in the file: Hartree, Bohr, k in 2*pi/alat (cartesian); converted here to eV and Angstrom.

Schema differences handled (published qes schemas): QE 6.2-6.3 write ``scf_conv`` without
``convergence_achieved`` (qes-20180510), so convergence is decided from ``scf_error`` against the
input ``conv_thr`` (which is also checked when the element is there); QE >= 7.0 write the run's exit status as ``<exit_status>`` (qes_211101)
where 6.x write ``<status>``.  Refused with :class:`UnsupportedOutput`: files older than the qes
schema (QE <= 6.1 ``data-file.xml``) and collinear spin-polarised (lsda) runs.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....bands import BandData
from ....errors import OutputParseError, UnsupportedOutput
from ....units import BOHR_ANGSTROM, HARTREE_EV

HA_PER_BOHR3_TO_GPA = 29421.015697


@dataclass(frozen=True)
class PwXmlOutput:
    qe_version: str
    calculation: str
    converged: bool | None  # of the (last) SCF; None only when the run was not an SCF (bands/nscf)
    relax_converged: bool | None  # structural optimisation converged (relax/vc-relax only)
    n_scf_steps: int | None
    scf_error_ry: float | None
    total_energy_ev: float | None
    fermi_energy_ev: float | None
    highest_occupied_ev: float | None
    forces_ev_per_angstrom: np.ndarray | None
    stress_gpa: np.ndarray | None
    wall_seconds: float | None
    cpu_seconds: float | None
    symbols: tuple[str, ...]
    cell_angstrom: np.ndarray
    positions_angstrom: np.ndarray
    spin_orbit: bool
    noncollinear: bool
    bands: BandData
    exit_status: int | None  # <status> (QE 6.x) or <exit_status> (QE >= 7.0); None when absent


def _floats(text: str | None) -> np.ndarray:
    return np.array((text or "").split(), dtype=float)


def _find(root: ET.Element, path: str) -> ET.Element | None:
    return root.find(path)


def _bool(elem: ET.Element | None) -> bool | None:
    if elem is None or elem.text is None:
        return None
    return elem.text.strip().lower() == "true"


def _version_tuple(version: str) -> tuple[int, int] | None:
    m = re.match(r"\s*(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _scf_converged(scf: ET.Element | None, root: ET.Element) -> bool | None:
    """Whether the (last) SCF converged: pw.x's own test, its estimated error (scf_error) below
    the input conv_thr (both Hartree), and convergence_achieved where written (QE >= 6.4; 6.2-6.3
    do not write it).  The error test catches what convergence_achieved does not: with
    scf_must_converge = .false. pw.x marks an SCF converged when it reaches electron_maxstep.
    (A relaxation tightens the threshold below conv_thr as it goes; the input value bounds it.)"""
    if scf is None:
        return None
    achieved = _bool(_find(scf, "convergence_achieved"))
    err, thr = _find(scf, "scf_error"), _find(root, "input/electron_control/conv_thr")
    below = float(err.text) < float(thr.text) if err is not None and thr is not None and err.text and thr.text else None
    if achieved is None:
        return below
    return achieved and below is not False


def parse_pw_xml(path: Path) -> PwXmlOutput:
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.save/data-file-schema.xml")) or sorted(path.glob("*.xml"))
        if not candidates:
            raise OutputParseError(f"no pw.x XML file in {path}", "pass <prefix>.save/data-file-schema.xml")
        path = candidates[0]
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise OutputParseError(f"cannot read pw.x XML {path}: {exc}", "the run may have been killed; rerun it") from None
    if root.tag.rpartition("}")[2] != "espresso":
        raise UnsupportedOutput(
            f"{path} is not a 'qes' schema file (root element <{root.tag}>): pw.x before 6.2 wrote "
            "data-file.xml in an older format",
            "rerun with QE >= 6.2, or pass the run's pw.x text output (verbosity='high')",
        )
    creator = _find(root, "general_info/creator")
    version = creator.get("VERSION", "unknown") if creator is not None else "unknown"
    parsed_version = _version_tuple(version)
    if parsed_version is not None and parsed_version < (6, 2):
        raise UnsupportedOutput(
            f"{path} was written by QE {version}; tmdflow reads the qes schema of QE >= 6.2",
            "rerun with QE >= 6.2, or pass the run's pw.x text output (verbosity='high')",
        )
    try:
        return _parse_qes(root, path, version)
    except (AttributeError, TypeError, ValueError, IndexError) as exc:  # an element or value missing
        raise OutputParseError(f"{path}: unexpected content in the pw.x XML ({type(exc).__name__}: {exc})",
                               "check that the file is a complete data-file-schema.xml; if it is, report it") from None


def _parse_qes(root: ET.Element, path: Path, version: str) -> PwXmlOutput:
    out = _find(root, "output")
    if out is None:
        raise OutputParseError(f"{path} has no <output> section", "the run did not finish; rerun it")
    calc_el = _find(root, "input/control_variables/calculation")
    calculation = calc_el.text.strip() if calc_el is not None and calc_el.text else "unknown"

    struct = _find(out, "atomic_structure")
    if struct is None:
        raise OutputParseError(f"{path}: no output/atomic_structure", "unsupported XML; report it")
    alat = float(struct.get("alat"))
    cell_bohr = np.array([_floats(_find(struct, f"cell/a{i}").text) for i in (1, 2, 3)])
    symbols, positions = [], []
    for atom in struct.iter("atom"):
        symbols.append(atom.get("name").strip())
        positions.append(_floats(atom.text))
    positions = np.array(positions) * BOHR_ANGSTROM

    bs = _find(out, "band_structure")
    if bs is None:
        raise OutputParseError(f"{path}: no band_structure", "unsupported XML; report it")
    noncolin = bool(_bool(_find(bs, "noncolin")))
    spin_orbit = bool(_bool(_find(bs, "spinorbit")))
    lsda = bool(_bool(_find(bs, "lsda")))
    if lsda:
        raise UnsupportedOutput(
            f"{path} is a collinear spin-polarised (lsda, nspin = 2) run: its eigenvalues are two "
            "band structures, one per spin",
            "tmdflow analyses spin-orbit (noncollinear) or spin-degenerate runs only",
        )
    nelec = float(_find(bs, "nelec").text)
    kpts, eigs = [], []
    for ks in bs.iter("ks_energies"):
        kpts.append(_floats(_find(ks, "k_point").text))
        eigs.append(_floats(_find(ks, "eigenvalues").text) * HARTREE_EV)
    if not kpts:
        raise OutputParseError(f"{path}: no eigenvalues", "the run stopped before diagonalisation")
    kcart = np.array(kpts)  # 2*pi/alat units
    crystal = kcart @ cell_bohr.T / alat
    reciprocal = 2 * np.pi * np.linalg.inv(cell_bohr * BOHR_ANGSTROM).T
    bands = BandData(
        kpoints_crystal=crystal,
        eigenvalues=np.array(eigs),
        n_electrons=nelec,
        spinor=noncolin,
        reciprocal_cell=reciprocal,
    )

    def energy(tag: str) -> float | None:
        el = _find(bs, tag)
        return float(el.text) * HARTREE_EV if el is not None and el.text else None

    scf = _find(out, "convergence_info/scf_conv")
    converged = _scf_converged(scf, root)
    n_steps = int(_find(scf, "n_scf_steps").text) if scf is not None and _find(scf, "n_scf_steps") is not None else None
    scf_err = float(_find(scf, "scf_error").text) * 2 if scf is not None and _find(scf, "scf_error") is not None else None
    opt = _find(out, "convergence_info/opt_conv/convergence_achieved")
    etot = _find(out, "total_energy/etot")
    forces = _find(out, "forces")
    stress = _find(out, "stress")
    timing = _find(root, "timing_info/total")
    status = _find(root, "exit_status")  # QE >= 7.0 (qes_211101 and later)
    if status is None:
        status = _find(root, "status")  # QE 6.x
    return PwXmlOutput(
        qe_version=version,
        calculation=calculation,
        converged=converged if calculation in ("scf", "relax", "vc-relax", "md", "vc-md") else None,
        relax_converged=_bool(opt) if calculation in ("relax", "vc-relax") else None,
        n_scf_steps=n_steps,
        scf_error_ry=scf_err,
        total_energy_ev=float(etot.text) * HARTREE_EV if etot is not None else None,
        fermi_energy_ev=energy("fermi_energy"),
        highest_occupied_ev=energy("highestOccupiedLevel"),
        forces_ev_per_angstrom=(
            _floats(forces.text).reshape(-1, 3) * HARTREE_EV / BOHR_ANGSTROM if forces is not None else None
        ),
        stress_gpa=_floats(stress.text).reshape(3, 3) * HA_PER_BOHR3_TO_GPA if stress is not None else None,
        wall_seconds=float(_find(timing, "wall").text) if timing is not None else None,
        cpu_seconds=float(_find(timing, "cpu").text) if timing is not None else None,
        symbols=tuple(symbols),
        cell_angstrom=cell_bohr * BOHR_ANGSTROM,
        positions_angstrom=positions,
        spin_orbit=spin_orbit,
        noncollinear=noncolin,
        bands=bands,
        exit_status=int(status.text) if status is not None and status.text else None,
    )
