"""What a task document says a calculation produced: :class:`TaskOutputs`, typed, with each
field's unit and meaning (after atomate2's task documents).

Stored shape: FLAT.  ``TaskDocument.outputs`` is stored as one JSON object whose keys are the
field names below (as before this model existed); only the fields a writer set are stored (a
field set to ``None`` is stored as ``null``, a field never set is absent), so a document written
today and one written before read back with the same keys and values.  Fields are grouped by who
writes them (common, pw.x, relax ladder, WIEN2k, Elk, phonons) through the base classes below;
every field is optional, because each code and step sets only its own.

Unknown keys (written by an older or newer tmdflow) are KEPT, not refused (``extra="allow"``):
they load, are readable as attributes (``outputs.some_key``) and are written back unchanged, so
no stored document fails to load because of its outputs.

How writers build it (the calculator adapters and the steps' task-document constructor)::

    TaskOutputs(total_energy_ev=..., converged=..., n_scf_steps=...)     # keyword arguments
    TaskOutputs.model_validate(result.outputs())                         # or a flat dict
    TaskDocument(..., outputs={...})                                     # a dict is validated too

and a step that adds to a task afterwards assigns attributes (validated on assignment)::

    task.outputs.scratch_freed_bytes = freed

Readers use attributes (``task.outputs.pw_cpu_seconds``; a field never written reads None); there
is no dict access (``outputs["key"]``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_serializer


class StoredModel(BaseModel):
    """A model stored with only the fields that were set (plus unknown keys, which are kept)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    @model_serializer(mode="wrap")
    def _only_fields_written(self, handler) -> dict[str, Any]:
        data = handler(self)
        written = self.model_fields_set | set(self.__pydantic_extra__ or {})
        return {key: value for key, value in data.items() if key in written}


class SlabStressOutput(StoredModel):
    """The slab stress check after a monolayer vc-relax (tmdflow.analysis.slab_stress), kbar."""

    sigma_xx: float = Field(description="in-plane stress sigma_xx of the relaxed slab (kbar)")
    sigma_zz: float = Field(description="out-of-plane stress sigma_zz as pw.x printed it (kbar)")
    sigma_zz_residual_forces: float | None = Field(
        None, description="the part of sigma_zz due to the residual forces' virial (kbar)")
    sigma_zz_basis: float | None = Field(
        None, description="sigma_zz less the residual forces' virial: the stress's basis-set (Pulay) error "
                          "(kbar); absent in documents written before it was separated (then sigma_zz)")
    threshold: float | None = Field(None, description="relax_stress_zz_thr the check used (kbar)")


class RelaxRungOutput(StoredModel):
    """One relaxation of the monolayer cut-off ladder (tmdflow.relax_ladder.RelaxRung.as_output)."""

    directory: str = Field(description="the rung's run directory")
    ecutwfc: float = Field(description="wavefunction cut-off of this relaxation (Ry)")
    ecutrho: float = Field(description="charge-density cut-off of this relaxation (Ry)")
    a_angstrom: float = Field(description="relaxed in-plane lattice parameter (Angstrom)")
    sigma_zz_basis_kbar: float = Field(description="the slab's sigma_zz less the residual forces' virial (kbar)")
    passed: bool = Field(description="whether |sigma_zz_basis| was within relax_stress_zz_thr")
    pw_cpu_seconds: float | None = Field(None, description="pw.x CPU time of the rung, interrupted runs included (s)")
    wall_seconds: float = Field(description="wall time of the rung's pw.x run (s)")
    reused: bool = Field(description="read back from a finished earlier run when the step was resumed")
    interrupted_runs: int | None = Field(
        None, description="pw.x runs of this rung stopped at max_seconds and resumed; absent in older documents")


class LatticeScan(StoredModel):
    """WIEN2k's E(a) scan of a monolayer relaxation and its equation-of-state fit."""

    a_angstrom: list[float] = Field(description="in-plane lattice parameters scanned (Angstrom)")
    energy_ev: list[float] = Field(description="total energy at each a, internal coordinates minimised (eV)")
    d_angstrom: list[float] | None = Field(None, description="M-X layer height d at each a (Angstrom)")
    a_fit_angstrom: float | None = Field(None, description="a at the fitted energy minimum (Angstrom)")
    eos: str | None = Field(None, description="equation of state fitted (ASE's name, e.g. birchmurnaghan)")


class CommonOutputs(StoredModel):
    """Set by every code's SCF-type step (pw.x, WIEN2k, Elk); None where the run has no such number."""

    total_energy_ev: float | None = Field(None, description="total energy of the final SCF (eV)")
    converged: bool | None = Field(
        None, description="SCF converged (pw.x: also its estimated accuracy below conv_thr); None for non-SCF runs")
    n_scf_steps: int | None = Field(None, description="SCF iterations of the (last) SCF cycle")
    fermi_energy_ev: float | None = Field(None, description="Fermi energy, or highest occupied level, as the code printed it (eV)")
    n_kpoints: int | None = Field(None, description="k-points of the run (irreducible for an SCF, the list for bands)")
    n_electrons: float | None = Field(None, description="number of valence (pw.x) or all electrons in the cell")
    scratch_freed_bytes: int | None = Field(
        None, description="bytes of wavefunction/scratch files removed after the step (bands steps)")


class PwOutputs(StoredModel):
    """Quantum ESPRESSO (pw.x and its post-processing): tmdflow.steps.context.pw_task_document."""

    relax_converged: bool | None = Field(None, description="BFGS converged (relax/vc-relax); None for other runs")
    max_force_ev_per_angstrom: float | None = Field(
        None, description="largest force component on an atom in the final structure (eV/Angstrom)")
    stress_diagonal_kbar: list[float] | None = Field(
        None, description="diagonal of the stress tensor of the final structure, xx yy zz (kbar); None if not computed")
    unconverged_eigenvalues: int | None = Field(
        None, description="non-SCF runs: final eigenvalues short of the Davidson threshold (pw.x c_bands); None for SCF runs")
    pw_cpu_seconds: float | None = Field(
        None, description="pw.x CPU time of the step (s): every run, those interrupted at max_seconds and "
                          "every relax rung or phonon displacement included")
    pw_runs_interrupted: int | None = Field(
        None, description="pw.x runs of the step stopped at max_seconds and resumed from their checkpoint")
    postprocessing_cpu_seconds: float | None = Field(
        None, description="CPU time of bands.x (bands_soc, soc_map) or projwfc.x (bands_sr) after pw.x (s); None otherwise")
    bandsx_wall_seconds: float | None = Field(None, description="wall time of bands.x's spin texture (s)")
    wannier_frozen_top_ev: float | None = Field(
        None, description="wannier_map: top of Wannier90's frozen window (eV, pw.x's zero): bands below it are "
                          "reproduced exactly on the grid")
    wannier_total_spread_angstrom2: float | None = Field(
        None, description="wannier_map: total spread of the 22 maximally localised Wannier functions (A^2)")
    wannier_disentanglement_converged: bool | None = Field(
        None, description="wannier_map: Wannier90's disentanglement reached dis_conv_tol")
    wannier_map_errors_mev: dict[str, float] | None = Field(
        None, description="wannier_map: largest |model - pw.x| at the soc_map step's direct points (meV): "
                          "'uvb_delta', 'lcb_delta' (where both conduction states are spin-polarised), "
                          "'uvb_energy', 'points'")


class RelaxLadderOutputs(StoredModel):
    """The monolayer relaxation's cut-off ladder (tmdflow.relax_ladder), pw.x only."""

    relax_rungs: list[RelaxRungOutput] | None = Field(None, description="every relaxation of the ladder, in order")
    slab_stress_kbar: SlabStressOutput | None = Field(None, description="the slab stress check of the last rung (kbar)")


class Wien2kOutputs(StoredModel):
    """WIEN2k (calculators/wien2k/adapter.py)."""

    gap_ev_wien2k: float | None = Field(None, description="band gap WIEN2k's lapw2 printed in case.scf (eV)")
    lattice_scan: LatticeScan | None = Field(None, description="the relax step's E(a) scan and fit")


class ElkOutputs(StoredModel):
    """Elk (calculators/elk/adapter.py)."""

    n_crystal_symmetries: int | None = Field(None, description="Elk's 'Number of crystal symmetries' (INFO.OUT)")
    gap_ev_elk: float | None = Field(None, description="indirect band gap Elk printed in INFO.OUT (eV)")
    elk_warnings: list[str] | None = Field(None, description="Elk's warnings in INFO.OUT, verbatim")
    started_from: str | None = Field(None, description="the density the spin-orbit SCF started from (e.g. scf_sr/STATE.OUT)")
    bands_grid: list[int] | None = Field(None, description="the n x n x 1 grid of the one-shot bands run")
    potential_from: str | None = Field(None, description="the SCF directory whose potential the bands run read")
    spin_states: list[list[Any]] | None = Field(None, description="LSJ_KST.OUT rows of the bands run (task 16 spins)")


class PhononOutputs(StoredModel):
    """The phonons step (phonopy + pw.x forces)."""

    n_displacements: int | None = Field(None, description="displaced supercells whose forces were computed")
    reused_displacements: int | None = Field(None, description="of them, read back from an earlier run")
    stable: bool | None = Field(None, description="no imaginary frequency beyond the tolerance")
    verdict: str | None = Field(None, description="the stability verdict in words")
    min_frequency_thz: float | None = Field(None, description="lowest frequency on the path (THz; negative: imaginary)")


class TaskOutputs(CommonOutputs, PwOutputs, RelaxLadderOutputs, Wien2kOutputs, ElkOutputs, PhononOutputs):
    """The outputs of one task: the common numbers and each code's and step's own (all optional;
    stored flat, only the fields set; unknown keys kept).  See the module docstring."""

    def written(self) -> dict[str, Any]:
        """The stored form: the keys a writer set (and unknown keys), JSON-compatible values."""
        return self.model_dump(mode="json")
