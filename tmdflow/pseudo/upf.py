"""Reading what matters from a UPF file header, and re-wrapping over-long lines.

Supports UPF v2 (``<PP_HEADER attr="..."/>``) and UPF v1 (``<PP_HEADER>`` text block; a v1 file
is fully relativistic when it carries ``<PP_ADDINFO>`` spin-orbit data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import PseudopotentialError

#: pw.x 6.7 reads UPF lines into a 1024-character buffer ("line too long ... not readable").
MAX_UPF_LINE = 1024
_NUMBERS_PER_LINE = 4


@dataclass(frozen=True)
class UpfHeader:
    element: str
    pseudo_type: str  # "PAW", "US", "NC", "SL"
    relativistic: str  # "full", "scalar", "no"
    has_so: bool
    z_valence: float
    functional: str
    wfc_cutoff: float | None  # Ry, suggested by the generator (None if absent)
    rho_cutoff: float | None

    @property
    def fully_relativistic(self) -> bool:
        return self.has_so or self.relativistic == "full"

    @property
    def is_norm_conserving(self) -> bool:
        return self.pseudo_type in ("NC", "SL")


_ATTR = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


def _truthy(value: str) -> bool:
    return value.strip().strip(".").upper() in ("TRUE", "T")


def read_upf_header(path: Path) -> UpfHeader:
    path = Path(path)
    if not path.is_file():
        raise PseudopotentialError(f"pseudopotential file {path} does not exist", "check the path")
    text = path.read_text(errors="replace")
    match = re.search(r"<PP_HEADER\b([^>]*)/?>", text, re.S)
    if match and "=" in match.group(1):
        attrs = dict(_ATTR.findall(match.group(1)))
        try:
            return UpfHeader(
                element=attrs["element"].strip(),
                pseudo_type=attrs.get("pseudo_type", "").strip().upper(),
                relativistic=attrs.get("relativistic", "").strip().lower(),
                has_so=_truthy(attrs.get("has_so", "F")),
                z_valence=float(attrs["z_valence"]),
                functional=attrs.get("functional", "").strip(),
                wfc_cutoff=float(attrs["wfc_cutoff"]) if attrs.get("wfc_cutoff") else None,
                rho_cutoff=float(attrs["rho_cutoff"]) if attrs.get("rho_cutoff") else None,
            )
        except (KeyError, ValueError) as exc:
            raise PseudopotentialError(
                f"{path}: UPF v2 header lacks or mangles {exc}", "regenerate or replace the file"
            ) from None
    block = re.search(r"<PP_HEADER>(.*?)</PP_HEADER>", text, re.S)
    if not block:
        raise PseudopotentialError(f"{path} has no <PP_HEADER>: not a UPF file", "use a UPF v1/v2 file")
    lines = [ln.split() for ln in block.group(1).strip().splitlines()]
    try:
        element = lines[1][0]
        ptype = lines[2][0].upper()
        z_val = next(float(l[0]) for l in lines if "Z" in l and "valence" in l)
        functional = next(" ".join(l[:4]) for l in lines if "Exchange-Correlation" in l)
    except (IndexError, StopIteration, ValueError):
        raise PseudopotentialError(f"{path}: cannot read the UPF v1 header", "use a UPF v2 file") from None
    has_so = "<PP_ADDINFO>" in text
    return UpfHeader(
        element=element,
        pseudo_type={"SL": "NC"}.get(ptype, ptype),
        relativistic="full" if has_so else "scalar",
        has_so=has_so,
        z_valence=z_val,
        functional=functional,
        wfc_cutoff=None,
        rho_cutoff=None,
    )


def rewrap_long_lines(path: Path, max_len: int = MAX_UPF_LINE) -> int:
    """Re-wrap numeric data lines longer than ``max_len`` in place; returns lines changed.

    ld1.x 6.7 writes some PAW arrays on single lines of up to ~13 000 characters, which
    pw.x 6.7 refuses.  Only lines made of numbers are re-wrapped; a long line holding XML
    markup is an error (we will not guess how to split it).
    """
    path = Path(path)
    out: list[str] = []
    changed = 0
    for line in path.read_text().splitlines():
        if len(line) <= max_len:
            out.append(line)
            continue
        if "<" in line or ">" in line:
            raise PseudopotentialError(
                f"{path}: a {len(line)}-character markup line cannot be re-wrapped safely",
                "report this file; regenerate with a different ld1.x version",
            )
        tokens = line.split()
        changed += 1
        for i in range(0, len(tokens), _NUMBERS_PER_LINE):
            out.append("  " + "  ".join(tokens[i : i + _NUMBERS_PER_LINE]))
    if changed:
        path.write_text("\n".join(out) + "\n")
    return changed
