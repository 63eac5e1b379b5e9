"""Two finished studies side by side: the same systems, different settings (e.g. cut-off).

    .venv/bin/python bench/compare_studies.py embedded:/copy/of/a.json embedded:/copy/of/b.json [--preset paper]

(A MongoDB URI works as well; with the embedded store read copies while a launcher runs.)
For every system present in both stores, printed as a Markdown table: the Table I geometry
(a, d; z for bulk) and the spin-orbit numbers (Delta_VB(K), Delta_CB(K), dE_Gamma-K, gap) of
study B, and B - A. The settings that differ between the two studies are printed first, from
the first common system's stored preset. Used to decide whether a cheaper setting changes any result
(docs/performance.md).
"""

from __future__ import annotations

import argparse

from tmdflow.settings import load_settings
from tmdflow.store.connection import connect
from tmdflow.store.documents import MaterialDocument
from tmdflow.store.results import MaterialQuery, ResultsStore

QUANTITIES = (  # label, getter, format of the value, scale of the difference
    ("a Å", lambda m: m.table1.a_angstrom, "{:.4f}", "{:+.4f}"),
    ("d Å", lambda m: m.table1.d_angstrom, "{:.4f}", "{:+.4f}"),
    ("z", lambda m: m.table1.z, "{:.4f}", "{:+.4f}"),
    ("Δ_VB(K) meV", lambda m: m.splitting.delta_vb_k_mev, "{:.1f}", "{:+.2f}"),
    ("Δ_CB(K) meV", lambda m: m.splitting.delta_cb_k_mev, "{:+.1f}", "{:+.2f}"),
    ("δE_Γ-K meV", lambda m: m.splitting.delta_e_gamma_k_mev, "{:.1f}", "{:+.2f}"),
    ("gap eV", lambda m: m.splitting.gap_ev, "{:.3f}", "{:+.3f}"),
)


def materials(uri: str, preset: str | None) -> tuple[ResultsStore, dict[str, MaterialDocument]]:
    store = ResultsStore(connect(load_settings(db_uri=uri)).db)
    docs = store.materials(MaterialQuery(preset=preset))
    return store, {f"{m.formula} {m.dimensionality}": m for m in docs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study_a", help="database URI of the reference study (A)")
    ap.add_argument("study_b", help="database URI of the study compared with it (B)")
    ap.add_argument("--preset", help="only systems of this preset")
    args = ap.parse_args()
    store_a, a = materials(args.study_a, args.preset)
    store_b, b = materials(args.study_b, args.preset)
    common = sorted(set(a) & set(b))
    if not common:
        raise SystemExit("no system is in both stores (check the URIs and --preset)")
    pa, pb = store_a.result_settings(a[common[0]]), store_b.result_settings(b[common[0]])
    changed = {k: (pa.get(k), pb.get(k)) for k in sorted(set(pa) | set(pb)) if pa.get(k) != pb.get(k)}
    print("settings A -> B: " + (", ".join(f"{k} {x} -> {y}" for k, (x, y) in changed.items()) or "identical"))
    print("| system | " + " | ".join(f"{q[0]} (B) | B − A" for q in QUANTITIES) + " |")
    print("|---|" + "---|---|" * len(QUANTITIES))
    for name in common:
        cells = []
        for _, get, fmt, dfmt in QUANTITIES:
            va, vb = get(a[name]), get(b[name])
            cells += ["—", "—"] if va is None or vb is None else [fmt.format(vb), dfmt.format(vb - va)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    missing = sorted(set(a) ^ set(b))
    if missing:
        print(f"\nin one store only: {', '.join(missing)}")


if __name__ == "__main__":
    main()
