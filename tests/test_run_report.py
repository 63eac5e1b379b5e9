"""Report tables built from store documents (no calculation)."""

import dataclasses
from datetime import datetime, timedelta, timezone

from tmdflow.presets import load_preset
from tmdflow.run_report import MaterialSection, _provenance_rows, _settings_rows
from tmdflow.store.documents import TaskDocument
from tests.helpers import material_doc


T0 = datetime(2026, 11, 24, tzinfo=timezone.utc)


def _task(step: str, minutes: int, preset: dict, **outputs) -> TaskDocument:
    return TaskDocument(task_id=f"MoS2-monolayer-quick-{step}", formula="MoS2", dimensionality="monolayer",
                        preset="quick", step=step, calculator="espresso", inputs={"preset": preset},
                        outputs=outputs, created_at=T0 + timedelta(minutes=minutes))


def test_settings_that_changed_while_a_study_was_resumed_are_listed_per_step():
    new = dataclasses.asdict(load_preset("quick"))
    old = {k: v for k, v in new.items() if k != "diago_david_ndim"}  # written before the key existed
    old["map_points"] = 24
    section = MaterialSection(material_doc(), None, [_task("bands_soc", 2, new), _task("relax", 0, old),
                                                  _task("scf_soc", 1, old)])
    rows = dict(_settings_rows(section))
    assert rows["ecutwfc"] == "45.0"  # the same for every step: one value
    assert rows["diago_david_ndim"] == "(not set) (relax, scf_soc); 4 (bands_soc)"
    assert rows["map_points"] == f"24 (relax, scf_soc); {new['map_points']} (bands_soc)"
    assert not any(k.startswith("wien2k_") for k in rows)  # a Quantum ESPRESSO result


def test_unconverged_eigenvalues_of_a_bands_run_appear_in_the_provenance():
    preset = dataclasses.asdict(load_preset("quick"))
    section = MaterialSection(material_doc(), None, [_task("scf_soc", 0, preset, unconverged_eigenvalues=None,
                                                        pw_cpu_seconds=61.4),
                                                  _task("bands_soc", 1, preset, unconverged_eigenvalues=2),
                                                  _task("soc_map", 2, preset, pw_cpu_seconds=30.2,
                                                        postprocessing_cpu_seconds=12.6)])
    rows = {row[0]: row for row in _provenance_rows(section)}
    notes = {step: row[-1] for step, row in rows.items()}
    assert rows["scf_soc"][4] == "61" and rows["bands_soc"][4] == "—"  # pw.x CPU s (older tasks: not recorded)
    assert rows["soc_map"][4] == "30 + 13"  # pw.x + bands.x
    assert notes["scf_soc"] == "—"
    assert notes["bands_soc"].startswith("2 eigenvalue(s) short of the Davidson threshold")


def test_the_slab_stress_check_and_its_cutoff_raise_appear_in_the_provenance():
    from tmdflow.store.documents import Correction

    preset = dataclasses.asdict(load_preset("paper"))
    relax = _task("relax", 0, preset, slab_stress_kbar={"sigma_xx": 0.41, "sigma_zz": -0.5, "sigma_zz_residual_forces": -0.07,
                                                     "sigma_zz_basis": -0.43, "threshold": 0.5})
    relax.corrections = [Correction(handler="slab_pulay_stress", reason="sigma_zz -2.93 kbar at 60/480 Ry",
                                    changes={"relax_ecutwfc": 80.0, "relax_ecutrho": 640.0}, attempt=1)]
    (row,) = _provenance_rows(MaterialSection(material_doc(), None, [relax]))
    assert row[-1] == ("slab_pulay_stress: {'relax_ecutwfc': 80.0, 'relax_ecutrho': 640.0}; "
                       "slab sigma_zz -0.43 kbar without residual forces (sigma_xx +0.41)")


def test_every_relaxation_of_the_cutoff_ladder_appears_with_its_cost():
    from pathlib import Path

    from tmdflow.calculators.espresso.relax_ladder import RelaxRung

    # the WS2 relax step of the session-13 paper study (rung CPU from its relax.out files)
    rungs = [RelaxRung(Path("relax"), 60.0, 480.0, 3.18166, -0.77, False, 760.2, 821.8, reused=False),
             RelaxRung(Path("relax-80Ry"), 80.0, 640.0, 3.18263, -0.05, True, 478.9, 517.9, reused=True)]
    relax = _task("relax", 0, dataclasses.asdict(load_preset("paper")), pw_cpu_seconds=1239.1,
                  relax_rungs=[r.as_output() for r in rungs])
    (row,) = _provenance_rows(MaterialSection(material_doc(), None, [relax]))
    assert row[4] == "1239"
    assert row[-1] == ("relaxations: 60/480 Ry a 3.1817 A sigma_zz -0.77 kbar (760 s CPU), "
                       "80/640 Ry a 3.1826 A sigma_zz -0.05 kbar (479 s CPU, reused)")


def test_a_step_resumed_after_max_seconds_says_so_beside_its_cpu_time():
    # the scf_soc step of the max_seconds test: one interrupted run and its resumption
    preset = dataclasses.asdict(load_preset("test"))
    rows = _provenance_rows(MaterialSection(material_doc(), None, [
        _task("scf_soc", 0, preset, pw_cpu_seconds=21.7, pw_runs_interrupted=1),
        _task("bands_soc", 1, preset, pw_cpu_seconds=5.0, pw_runs_interrupted=0)]))
    notes = {row[0]: row[-1] for row in rows}
    assert notes["scf_soc"] == ("resumed after max_seconds (1 interrupted run(s), kept as scf_soc.out.1…; "
                                "CPU includes them)")
    assert notes["bands_soc"] == "—"
