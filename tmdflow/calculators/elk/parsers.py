"""Plain parsers of Elk 8.4 output files: no database, no workflow imports; typed, frozen results.

  EIGVAL.OUT      second-variational eigenvalues (Hartree) and occupancies per k-point
  INFO.OUT        the run's log: version, lattice, symmetry count, k-set, charges, the SCF loop
                  (total energy, Fermi energy, RMS potential change), warnings, the clean end
  LSJ_KST.OUT     task 16: <L>, <S>, <J> per state (muffin-tin only; S = sigma / 2)
  KPOINTS.OUT     the k-set of a run (lattice coordinates and weights)
  GEOMETRY.OUT    tasks 2/3: the structure a geometry optimisation ended with (lattice, positions)
  FORCES_OPT.OUT  tasks 2/3: the largest force of each optimisation step, the last forces
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import OutputParseError

_NUM = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?"


def _float(s: str) -> float:
    return float(s.replace("D", "E").replace("d", "e"))


def _text(source: str | Path) -> tuple[str, str]:
    if isinstance(source, Path):
        if not source.is_file():
            raise OutputParseError(f"{source} does not exist", "the Elk run did not finish or wrote elsewhere")
        return source.read_text(errors="replace"), str(source)
    return source, "text"


@dataclass(frozen=True)
class ElkEigenvalues:
    kpoints: np.ndarray  # (nk, 3) lattice coordinates of the reciprocal basis
    eigenvalues_ha: np.ndarray  # (nk, nstsv) Hartree, ascending
    occupancies: np.ndarray  # (nk, nstsv)

    @property
    def n_states(self) -> int:
        return int(self.eigenvalues_ha.shape[1])


def parse_eigval(source: str | Path) -> ElkEigenvalues:
    """EIGVAL.OUT: ``nkpt : nkpt``, ``nstsv : nstsv``, then per k-point its index and vkl, the
    states' index, eigenvalue (Ha) and occupancy."""
    text, name = _text(source)
    m_nk = re.search(r"^\s*(\d+)\s*:\s*nkpt", text, re.M)
    m_ns = re.search(r"^\s*(\d+)\s*:\s*nstsv", text, re.M)
    if not (m_nk and m_ns):
        raise OutputParseError(f"{name}: no 'nkpt'/'nstsv' header (not an Elk EIGVAL.OUT?)",
                               "rerun the step; EIGVAL.OUT is written at the end of each SCF loop")
    nk, ns = int(m_nk.group(1)), int(m_ns.group(1))
    blocks = re.split(r"^\s*\d+\s+(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s*:\s*k-point, vkl\s*$",
                      text, flags=re.M)
    if (len(blocks) - 1) // 4 != nk:
        raise OutputParseError(f"{name}: {(len(blocks) - 1) // 4} k-points, header says {nk}",
                               "the file is truncated: rerun the step")
    kpts, eig, occ = [], [], []
    for i in range(nk):
        kx, ky, kz, body = blocks[1 + 4 * i: 5 + 4 * i]
        kpts.append([_float(kx), _float(ky), _float(kz)])
        rows = [ln.split() for ln in body.splitlines()]
        rows = [r for r in rows if len(r) == 3 and r[0].isdigit()]
        if len(rows) != ns:
            raise OutputParseError(f"{name}: k-point {i + 1} has {len(rows)} states, header says {ns}",
                                   "the file is truncated: rerun the step")
        eig.append([_float(r[1]) for r in rows])
        occ.append([_float(r[2]) for r in rows])
    return ElkEigenvalues(np.array(kpts), np.array(eig), np.array(occ))


@dataclass(frozen=True)
class ElkInfo:
    """What INFO.OUT says of one Elk run (possibly several tasks)."""

    version: str
    started_from: str  # "atomic densities" | "STATE.OUT" | ""
    lattice_bohr: np.ndarray  # (3, 3) rows a_i
    reciprocal_bohr: np.ndarray  # (3, 3) rows b_i, 2 pi included
    n_crystal_symmetries: int | None
    spin_orbit: bool
    n_kpoints: int | None
    kgrid: tuple[int, int, int] | None
    rgkmax: float | None
    muffin_tin_radii: tuple[float, ...]
    valence_charge: float | None
    core_charge: float | None
    total_energies_ha: tuple[float, ...]
    fermi_energies_ha: tuple[float, ...]
    rms_potential_changes: tuple[float, ...]
    energy_changes_ha: tuple[float, ...]
    converged: bool  # "Convergence targets achieved"
    stopped: bool  # "Elk version ... stopped": the program reached its normal end
    warnings: tuple[str, ...] = field(default=())
    errors: tuple[str, ...] = field(default=())
    indirect_gap_ha: float | None = None

    @property
    def n_iterations(self) -> int:
        return len(self.total_energies_ha)

    @property
    def total_energy_ha(self) -> float:
        if not self.total_energies_ha:
            raise OutputParseError("INFO.OUT has no total energy", "the SCF loop did not run")
        return self.total_energies_ha[-1]


def _matrix_after(text: str, title: str) -> np.ndarray:
    m = re.search(re.escape(title) + r"\s*:\s*\n((?:\s*" + _NUM + r"\s+" + _NUM + r"\s+" + _NUM + r"\s*\n){3})", text)
    if not m:
        return np.full((3, 3), np.nan)
    return np.array([[_float(x) for x in line.split()] for line in m.group(1).strip().splitlines()])


def _message_blocks(text: str, kind: str) -> tuple[str, ...]:
    """'Warning(routine): ...' / 'Error(routine): ...' with their indented continuation lines."""
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{kind}("):
            msg = [line.strip()]
            for nxt in lines[i + 1: i + 4]:
                if nxt.startswith(" ") and nxt.strip() and not nxt.strip().startswith(("Warning(", "Error(", "+", "|")):
                    msg.append(nxt.strip())
                else:
                    break
            out.append(" ".join(msg))
    return tuple(out)


def parse_version_banner(text: str) -> str | None:
    """The version in what Elk prints on standard output as it starts ("Elk code version 8.4.30
    started"); None when the text has no such line."""
    m = re.search(r"Elk code version\s+(\S+)\s+started", text)
    return m.group(1) if m else None


def parse_info(source: str | Path) -> ElkInfo:
    text, name = _text(source)
    m = re.search(r"Elk version\s+(\S+)\s+started", text)
    if not m:
        raise OutputParseError(f"{name}: no 'Elk version ... started' line (not an Elk INFO.OUT?)",
                               "rerun the step; Elk writes INFO.OUT in its run directory")
    started = ("STATE.OUT" if re.search(r"potential read in from STATE\.OUT|from STATE\.OUT", text)
               else "atomic densities" if "starting from atomic densities" in text else "")
    nsym = re.findall(r"Number of crystal symmetries\s*:\s*(\d+)", text)
    nk = re.findall(r"Total number of k-points\s*:\s*(\d+)", text)
    grid = re.findall(r"k-point grid\s*:\s*(\d+)\s+(\d+)\s+(\d+)", text)
    rgk = re.findall(r"Muffin-tin radius times maximum \|G\+k\|\s*:\s*(" + _NUM + ")", text)
    rmt = tuple(_float(x) for x in re.findall(r"muffin-tin radius\s*:\s*(" + _NUM + ")", text))
    val = re.findall(r"^\s*valence\s*:\s*(" + _NUM + r")\s*$", text, re.M)
    core = re.findall(r"^\s*core\s*:\s*(" + _NUM + r")\s*$", text, re.M)
    etot = tuple(_float(x) for x in re.findall(r"^\s*total energy\s*:\s*(" + _NUM + ")", text, re.M))
    ef = tuple(_float(x) for x in re.findall(r"^\s*Fermi\s*:\s*(" + _NUM + ")", text, re.M))
    rms = tuple(_float(x) for x in re.findall(r"RMS change in Kohn-Sham potential \(target\)\s*:\s*(" + _NUM + ")", text))
    de = tuple(_float(x) for x in re.findall(r"Absolute change in total energy \(target\)\s*:\s*(" + _NUM + ")", text))
    gaps = re.findall(r"Estimated indirect band gap\s*:\s*(" + _NUM + ")", text)
    return ElkInfo(
        version=m.group(1),
        started_from=started,
        lattice_bohr=_matrix_after(text, "Lattice vectors"),
        reciprocal_bohr=_matrix_after(text, "Reciprocal lattice vectors"),
        n_crystal_symmetries=int(nsym[-1]) if nsym else None,
        spin_orbit="spin-orbit coupling" in text,
        n_kpoints=int(nk[-1]) if nk else None,
        kgrid=tuple(int(x) for x in grid[-1]) if grid else None,
        rgkmax=_float(rgk[-1]) if rgk else None,
        muffin_tin_radii=rmt,
        valence_charge=_float(val[-1]) if val else None,
        core_charge=_float(core[-1]) if core else None,
        total_energies_ha=etot,
        fermi_energies_ha=ef,
        rms_potential_changes=rms,
        energy_changes_ha=de,
        converged="Convergence targets achieved" in text,
        stopped=bool(re.search(r"Elk version\s+\S+\s+stopped", text)),
        warnings=_message_blocks(text, "Warning"),
        errors=_message_blocks(text, "Error"),
        indirect_gap_ha=_float(gaps[-1]) if gaps else None,
    )


def parse_output_errors(source: str | Path) -> tuple[str, ...]:
    """'Error(...)' messages Elk wrote to standard output (input errors stop Elk before INFO.OUT)."""
    text, _ = _text(source)
    return _message_blocks(text, "Error")


@dataclass(frozen=True)
class ElkKPoints:
    kpoints: np.ndarray  # (nk, 3) lattice coordinates
    weights: np.ndarray  # (nk,)


def parse_kpoints(source: str | Path) -> ElkKPoints:
    text, name = _text(source)
    lines = text.splitlines()
    if not lines or "nkpt" not in lines[0]:
        raise OutputParseError(f"{name}: not an Elk KPOINTS.OUT", "rerun the step")
    nk = int(lines[0].split(":")[0])
    rows = [ln.split() for ln in lines[1: 1 + nk]]
    return ElkKPoints(np.array([[_float(x) for x in r[1:4]] for r in rows]), np.array([_float(r[4]) for r in rows]))


@dataclass(frozen=True)
class ElkStateSpin:
    """LSJ_KST.OUT (task 16): muffin-tin <L>, <S>, <J> of the listed states, per atom."""

    kpoints: dict[int, tuple[float, float, float]]  # k-point index (1-based) -> lattice coordinates
    per_atom: dict[tuple[int, int], tuple[dict, ...]]  # (k index, state) -> ({species, atom, L, S, J}, ...)

    @property
    def s_z_total(self) -> dict[tuple[int, int], float]:
        """(k index, state) -> S_z summed over the muffin-tins (S = sigma / 2; the interstitial is
        not included, so |S_z| < 1/2)."""
        return {key: float(sum(a["S"][2] for a in atoms)) for key, atoms in self.per_atom.items()}


def parse_lsj_kst(source: str | Path) -> ElkStateSpin:
    text, name = _text(source)
    pattern = re.compile(
        r"k-point\s*:\s*(\d+)\s+(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s*\n"
        r"\s*state\s*:\s*(\d+)\s*\n"
        r"\s*species\s*:\s*(\d+)\s*\((\w+)\)\s*,\s*atom\s*:\s*(\d+)\s*\n"
        r"\s*L\s*:\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s*\n"
        r"\s*S\s*:\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s*\n"
        r"\s*J\s*:\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")")
    kpts: dict[int, tuple[float, float, float]] = {}
    atoms: dict[tuple[int, int], list[dict]] = {}
    for m in pattern.finditer(text):
        g = m.groups()
        ik, ist = int(g[0]), int(g[4])
        kpts[ik] = (_float(g[1]), _float(g[2]), _float(g[3]))
        atoms.setdefault((ik, ist), []).append({
            "species": g[6], "atom": int(g[7]), "L": tuple(_float(x) for x in g[8:11]),
            "S": tuple(_float(x) for x in g[11:14]), "J": tuple(_float(x) for x in g[14:17])})
    if not atoms:
        raise OutputParseError(f"{name}: no 'k-point / state / species / L S J' blocks (not an LSJ_KST.OUT?)",
                               "rerun the bands step (Elk task 16 with kstlist)")
    return ElkStateSpin(kpts, {k: tuple(v) for k, v in atoms.items()})


@dataclass(frozen=True)
class ElkGeometry:
    """GEOMETRY.OUT (tasks 2, 3): the structure a geometry optimisation ended with.  Elk writes
    the lattice with 10 and the positions with 8 significant digits, after its atomic basis shift
    (the first atom at the origin): read the relaxed heights from it and rebuild the ideal prism
    (tmdflow.calculators.elk.relax), do not run on these digits (docs/elk.md)."""

    lattice_bohr: np.ndarray  # (3, 3) rows a_i, scale factors applied
    symbols: tuple[str, ...]  # element of each atom, in the file's species order
    positions_lattice: np.ndarray  # (n, 3) lattice coordinates


def parse_geometry(source: str | Path) -> ElkGeometry:
    """GEOMETRY.OUT: ``scale``, ``scale1..3``, ``avec`` (3 rows, bohr), ``atoms`` (species count;
    per species its file name, atom count and one line of position + field per atom)."""
    text, name = _text(source)
    lines = [ln.split(":")[0].strip() if ":" in ln else ln.strip() for ln in text.splitlines()]
    def block(key: str) -> int:
        try:
            return lines.index(key) + 1
        except ValueError:
            raise OutputParseError(f"{name}: no '{key}' block (not an Elk GEOMETRY.OUT?)",
                                   "the geometry optimisation did not write its result: rerun the relax step") from None
    try:
        scales = [_float(lines[block(k)].split()[0]) if k in lines else 1.0 for k in ("scale1", "scale2", "scale3")]
        scale = _float(lines[block("scale")].split()[0]) if "scale" in lines else 1.0
        i = block("avec")
        avec = np.array([[_float(x) for x in lines[i + r].split()[:3]] for r in range(3)])
        avec = avec * scale * np.array(scales)[:, None]
        i = block("atoms")
        nspecies = int(lines[i].split()[0])
        symbols, positions = [], []
        i += 1
        for _ in range(nspecies):
            species = lines[i].strip().strip("'\"")
            element = species.removesuffix(".in")
            count = int(lines[i + 1].split()[0])
            for line in lines[i + 2: i + 2 + count]:
                positions.append([_float(x) for x in line.split()[:3]])
                symbols.append(element)
            i += 2 + count
    except (IndexError, ValueError) as exc:
        raise OutputParseError(f"{name}: malformed GEOMETRY.OUT ({exc})",
                               "the file is truncated: rerun the relax step") from None
    if not symbols:
        raise OutputParseError(f"{name}: GEOMETRY.OUT lists no atoms", "rerun the relax step")
    return ElkGeometry(avec, tuple(symbols), np.array(positions))


@dataclass(frozen=True)
class ElkGeometryOptimisation:
    """FORCES_OPT.OUT (tasks 2, 3): per atomic-position optimisation step the largest force
    magnitude (Ha/bohr) and the target; the total force on each atom at the last step."""

    max_forces_ha_bohr: tuple[float, ...]  # one per optimisation step
    target_ha_bohr: float | None  # epsforce
    final_forces_ha_bohr: np.ndarray  # (n atoms, 3) total force of the last step, file order
    converged: bool  # "Force convergence target achieved"

    @property
    def n_steps(self) -> int:
        return len(self.max_forces_ha_bohr)


def parse_forces_opt(source: str | Path) -> ElkGeometryOptimisation:
    text, name = _text(source)
    steps = re.split(r"^\s*Atomic position optimisation step\s*:\s*\d+\s*$", text, flags=re.M)[1:]
    if not steps:
        raise OutputParseError(f"{name}: no 'Atomic position optimisation step' (not an Elk FORCES_OPT.OUT?)",
                               "the geometry optimisation wrote no step: read INFO.OUT of the relax run")
    maxima, target = [], None
    for body in steps:
        m = re.search(r"Maximum force magnitude over all atoms \(target\)\s*:\s*(" + _NUM + r")\s*\(\s*(" + _NUM
                      + r")\s*\)", body)
        if not m:
            raise OutputParseError(f"{name}: step {len(maxima) + 1} has no 'Maximum force magnitude' line",
                                   "the file is truncated: rerun the relax step")
        maxima.append(_float(m.group(1)))
        target = _float(m.group(2))
    forces = re.findall(r"total force\s*:\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + ")", steps[-1])
    return ElkGeometryOptimisation(tuple(maxima), target, np.array([[_float(x) for x in f] for f in forces]),
                                   "Force convergence target achieved" in text)
