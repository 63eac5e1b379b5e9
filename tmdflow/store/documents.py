"""Typed documents of the results store (validated before every write).

Units are in the field names: *_mev, *_ev, *_angstrom, *_seconds.
"""

from __future__ import annotations

import base64
import zlib
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..analysis.splitting import SplittingResult
from .task_outputs import TaskOutputs

Dimensionality = Literal["monolayer", "bulk"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class StructureDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    symbols: list[str]
    cell_angstrom: list[list[float]]
    positions_angstrom: list[list[float]]
    spacegroup: int | None = None

    @classmethod
    def from_atoms(cls, atoms, spacegroup: int | None = None) -> "StructureDoc":
        return cls(
            symbols=list(atoms.get_chemical_symbols()),
            cell_angstrom=np.asarray(atoms.cell[:]).tolist(),
            positions_angstrom=np.asarray(atoms.positions).tolist(),
            spacegroup=spacegroup,
        )

    def to_atoms(self):
        """ASE ``Atoms`` (Angstrom, periodic in all three directions: a monolayer's cell holds its vacuum)."""
        from ase import Atoms

        return Atoms(self.symbols, positions=self.positions_angstrom, cell=self.cell_angstrom, pbc=True)

    def to_structure(self):
        """pymatgen ``Structure`` (Cartesian positions in Angstrom; pymatgen imported on first use)."""
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.cell_angstrom), self.symbols, self.positions_angstrom,
                         coords_are_cartesian=True)

    @property
    def reciprocal_cell_inv_angstrom(self) -> list[list[float]]:
        """Rows b_i in 1/Angstrom, 2*pi included (pymatgen's and pw.x's convention)."""
        return (2 * np.pi * np.linalg.inv(np.asarray(self.cell_angstrom)).T).tolist()


class _HasStructure:
    """``to_structure()`` / ``to_atoms()`` for documents that carry a ``structure``."""

    def _structure_or_fail(self) -> "StructureDoc":
        if self.structure is None:
            from ..errors import InputError

            raise InputError(f"{self._what()} stores no structure",
                             "tmdflow.structure(ID) reads it from the result's task documents")
        return self.structure

    def to_structure(self):
        """The stored structure as a pymatgen ``Structure``."""
        return self._structure_or_fail().to_structure()

    def to_atoms(self):
        """The stored structure as an ASE ``Atoms``."""
        return self._structure_or_fail().to_atoms()


class PseudoRef(BaseModel):
    file: str
    sha256: str = Field(min_length=64, max_length=64)
    source: str


class Correction(BaseModel):
    """One automatic recovery action (aiida-style restart handler), recorded in the task."""

    handler: str
    reason: str
    changes: dict[str, Any]
    attempt: int


class ResultIdentity(BaseModel):
    """What makes a result this result (tmdflow.identity): the same hashes, the same numbers."""

    model_config = ConfigDict(extra="forbid")
    settings_hash: str = Field(description="SHA-256 of calculator, resolved preset and structure source")
    result_hash: str = Field(description="SHA-256 of the settings hash and the pseudopotential files' SHA-256")
    workflow: str = Field(description="name of the workflow (or 'compute') that last wrote the result")
    overrides: dict[str, Any] = Field(default_factory=dict, description="the workflow's preset overrides")
    structure_source: dict[str, Any] = Field(default_factory=dict,
                                             description="starting geometry and the step that relaxed it")
    identity_version: int = 1

    def settings_label(self, preset: str) -> str:
        """``test`` or ``test (kmesh=6)``: the preset and how the result's settings differ from it."""
        from ..identity import describe_overrides

        return preset if not self.overrides else f"{preset} ({describe_overrides(self.overrides)})"


class TaskDocument(_HasStructure, BaseModel):
    """One calculation (one pw.x/bands.x step); ``structure``: the structure it ran on."""

    model_config = ConfigDict(extra="forbid")
    task_id: str  # "<material key>-<step>" (tmdflow.identity), unique: re-runs update it
    formula: str
    dimensionality: Dimensionality
    preset: str
    step: str
    calculator: str
    code_version: str | None = None
    state: Literal["completed", "failed"] = "completed"
    error: str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)  # input text and parameters
    structure: StructureDoc | None = None
    # energy (eV), convergence, timings, each code's own numbers (tmdflow.store.task_outputs: typed,
    # stored flat with only the keys a writer set; unknown keys of other versions kept)
    outputs: TaskOutputs = Field(default_factory=TaskOutputs)
    pseudopotentials: dict[str, PseudoRef] = Field(default_factory=dict)
    wall_seconds: float | None = None
    directory: str | None = None
    host: str | None = None
    corrections: list[Correction] = Field(default_factory=list)
    identity: ResultIdentity | None = None  # None: written before result identities (legacy)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    def _what(self) -> str:
        return f"task {self.task_id}"


class Table1Entry(BaseModel):
    """The paper's Table I parameters for one structure (Angstrom; z in units of c)."""

    a_angstrom: float
    c_angstrom: float | None = None
    z: float | None = None
    d_angstrom: float
    relaxed: bool


class MaterialDocument(_HasStructure, BaseModel):
    """One material x dimensionality x preset: the numbers users query and Table I shows.

    ``structure``: the structure of the analysed spin-orbit bands (the relaxed one when the
    workflow relaxed).  Documents written before it was stored have None; ``tmdflow.query``
    fills it from the result's task documents, ``to_structure()`` / ``to_atoms()`` read it."""

    model_config = ConfigDict(extra="forbid")
    material_id: str  # "<formula>-<dim>-<preset>[-<calculator>]-<result hash>" (tmdflow.identity)
    formula: str
    dimensionality: Dimensionality
    preset: str
    calculator: str
    spin_orbit_mode: str
    table1: Table1Entry
    splitting: SplittingResult  # the analysis dataclass itself, validated by pydantic
    bandstructure_id: str | None = None  # key in the bandstructures collection
    task_ids: list[str] = Field(default_factory=list)
    identity: ResultIdentity | None = None  # None: written before result identities (legacy)
    structure: StructureDoc | None = None  # None: written before structures were stored here
    updated_at: datetime = Field(default_factory=utcnow)

    def _what(self) -> str:
        return f"material {self.material_id}"

    @property
    def settings_label(self) -> str:
        """The preset, with the overrides the result was computed with; ``(legacy)`` for a
        document written before identities, whose overrides were not recorded."""
        return self.identity.settings_label(self.preset) if self.identity else f"{self.preset} (legacy)"


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """Compact, exact-enough encoding: float32, zlib, base64 (a 16x16 SOC band set ~ 40 kB)."""
    a = np.ascontiguousarray(np.asarray(array, dtype="<f4"))
    return {"shape": list(a.shape), "dtype": "<f4", "data": base64.b64encode(zlib.compress(a.tobytes())).decode()}


def decode_array(doc: dict[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(doc["data"]))
    return np.frombuffer(raw, dtype=doc["dtype"]).reshape(doc["shape"])


#: BandStructureDoc.kind of the splitting map's band document (what the report redraws Fig. 3 from)
BAND_MAP_KIND = "soc_map"
#: ... and of the Wannier model's bands (the wannier_map step): Fig. 3's fine wedge, then the soc_map run's points
BAND_MAP_WANNIER_KIND = "soc_map_wannier"


class BandStructureDoc(BaseModel):
    """Eigenvalues (eV), <sigma_z> and orbital weights on the k list of one bands run.

    kind: ``soc_path`` (the spin-orbit bands step: special points + Gamma-M-K-Gamma),
    ``sr_path`` (scalar-relativistic, same k list, with projwfc.x orbital weights),
    ``soc_map`` (spin-orbit run on the irreducible wedge of the splitting map),
    ``soc_map_wannier`` (the Wannier model's bands around the gap on Fig. 3's fine wedge, then at
    the soc_map run's points: the wannier_map step)."""

    model_config = ConfigDict(extra="forbid")
    bandstructure_id: str
    kind: Literal["soc_path", "sr_path", "soc_map", "soc_map_wannier"] = "soc_path"
    kpoints_crystal: dict[str, Any]
    eigenvalues_ev: dict[str, Any]
    sigma_z: dict[str, Any] | None = None
    orbital_weights: dict[str, dict[str, Any]] | None = None  # M_dz2, M_dxy_dx2y2, X_pz, X_pxpy
    labels: list[str] = Field(default_factory=list)
    n_electrons: float
    # the reciprocal lattice (rows b_i, 1/Angstrom, 2*pi included) and pw.x's Fermi energy (eV) of
    # the run; None in documents written before they were stored (then read from the task
    # document of the same id: tmdflow.objects)
    reciprocal_cell_inv_angstrom: list[list[float]] | None = None
    fermi_energy_ev: float | None = None

    @classmethod
    def from_bands(cls, bandstructure_id: str, kind: str, bands, weights: dict | None = None,
                   fermi_energy_ev: float | None = None) -> "BandStructureDoc":
        """The document of one ``tmdflow.bands.BandData`` (and projwfc.x weights)."""
        return cls(
            bandstructure_id=bandstructure_id, kind=kind, kpoints_crystal=encode_array(bands.kpoints_crystal),
            eigenvalues_ev=encode_array(bands.eigenvalues),
            sigma_z=encode_array(bands.sigma_z) if bands.sigma_z is not None else None,
            orbital_weights={k: encode_array(v) for k, v in weights.items()} if weights else None,
            labels=list(bands.labels), n_electrons=bands.n_electrons,
            reciprocal_cell_inv_angstrom=np.asarray(bands.reciprocal_cell, float).tolist(),
            fermi_energy_ev=fermi_energy_ev,
        )


class FiguresDoc(BaseModel):
    """The figures of one material (files in the run directory) and the physics checks."""

    model_config = ConfigDict(extra="forbid")
    material_id: str
    directory: str
    files: list[str]
    checks: dict[str, Any]
    gamma_k_profile: dict[str, list[float]] = Field(default_factory=dict)
    updated_at: datetime = Field(default_factory=utcnow)


class ConvergenceDoc(BaseModel):
    """A convergence study of one monolayer: converged settings and error bars (meV)."""

    model_config = ConfigDict(extra="forbid")
    convergence_id: str  # "<formula>-monolayer-<base preset>[+<El>:<family>...]" (convergence.convergence_id)
    formula: str
    base_preset: str
    pseudo_family: str | None = None  # of the base preset; None in older documents (then taken
    spin_orbit_mode: str | None = None  # from the named base preset)
    element_pseudo_families: dict[str, str] | None = None  # of the base preset; None: older document
    tolerance_mev: float
    converged_settings: dict[str, float]
    converged: dict[str, bool]
    error_bars_mev: dict[str, float]
    values_mev: dict[str, float]
    points: list[dict[str, Any]]
    updated_at: datetime = Field(default_factory=utcnow)

    def study_settings(self) -> dict[str, Any]:
        """The converged settings with the pseudopotentials (family, per-element replacements)
        and spin-orbit mode they hold for.  A document written before per-element families
        existed used none: its family alone."""
        out: dict[str, Any] = dict(self.converged_settings)
        if self.pseudo_family is None or self.spin_orbit_mode is None:
            from ..presets import available_presets, load_preset

            if self.base_preset in available_presets():
                base = load_preset(self.base_preset)
                out.update(pseudo_family=base.pseudo_family, spin_orbit_mode=base.spin_orbit_mode,
                           element_pseudo_families=dict(base.element_pseudo_families))
        if self.pseudo_family is not None:
            out["pseudo_family"] = self.pseudo_family
            out["element_pseudo_families"] = dict(self.element_pseudo_families or {})
        if self.spin_orbit_mode is not None:
            out["spin_orbit_mode"] = self.spin_orbit_mode
        return out


class PhononDoc(BaseModel):
    """Phonons of one monolayer (phonopy + QE forces): frequencies at Gamma, M, K, dispersion,
    the stability verdict and the plot files."""

    model_config = ConfigDict(extra="forbid")
    material_id: str
    formula: str
    stable: bool
    verdict: str
    result: dict[str, Any]  # tmdflow.phonons.PhononResult as a dict (THz)
    files: list[str] = Field(default_factory=list)
    updated_at: datetime = Field(default_factory=utcnow)


class CheckpointDoc(BaseModel):
    """A finished part of a long step that has not finished as a whole (one point of an Elk E(a)
    scan): kept in the store so that a rerun -- on this machine or, through a backup, on another --
    does not compute it again.  ``key`` is the hash of the inputs that part ran on, so a checkpoint
    is used only for exactly those inputs; the step's checkpoints are deleted when its task is
    stored."""

    model_config = ConfigDict(extra="forbid")
    checkpoint_id: str  # "<task_id>:<key>"
    task_id: str = Field(description="the task document id of the step the part belongs to")
    key: str = Field(description="sha256 of the part's inputs (the adapter defines which)")
    label: str = Field(description="what the part is, for people: e.g. 'scan2 a=3.3156 A'")
    data: dict[str, Any] = Field(description="the part's result, as the adapter reads it back")
    created_at: datetime = Field(default_factory=utcnow)
    settings_hash: str | None = Field(None, description="the settings hash of the step's workflow (its "
                                      "Firework's), so 'tmdflow status' shows the parts kept under the step "
                                      "that will reuse them; None in checkpoints written before it was recorded")
