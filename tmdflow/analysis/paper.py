"""Reference values of Zhu, Cheng & Schwingenschloegl, PRB 84, 153402 (2011) (inputs/ data)."""

from __future__ import annotations

from dataclasses import dataclass

from ..data import load_yaml


@dataclass(frozen=True)
class PaperValues:
    formula: str
    delta_vb_k_mev: float | None
    delta_e_gamma_k_mev: float | None
    monolayer_a: float | None
    monolayer_d: float | None


def paper_citation() -> str:
    return load_yaml("paper_zhu2011.yaml")["citation"]


def paper_values(formula: str) -> PaperValues | None:
    entry = load_yaml("paper_zhu2011.yaml")["materials"].get(formula)
    if entry is None:
        return None
    return PaperValues(
        formula=formula,
        delta_vb_k_mev=entry.get("delta_vb_k"),
        delta_e_gamma_k_mev=entry.get("delta_e_gamma_k"),
        monolayer_a=entry.get("monolayer_a"),
        monolayer_d=entry.get("monolayer_d"),
    )


def paper_formulas() -> list[str]:
    return list(load_yaml("paper_zhu2011.yaml")["materials"])
