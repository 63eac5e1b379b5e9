"""Shared code of the fake WIEN2k scripts (TEST DOUBLE; see README.md). Standard library only."""

import cmath
import math
import os
import sys
from pathlib import Path

RY_EV = 13.605693122994
VALENCE = {24: 14, 42: 14, 74: 14, 16: 6, 34: 16, 52: 16}  # made-up "lstart" valence counts
SYMBOL = {24: "Cr", 42: "Mo", 74: "W", 16: "S", 34: "Se", 52: "Te"}
# the model's parameters (Ry, bohr): known to the tests
LAMBDA_VB = {24: 0.0050, 42: 0.0110, 74: 0.0310}
LAMBDA_CB = {24: 0.0002, 42: 0.0003, 74: 0.0020}
# the model's E(a) minimum (bohr) per (metal Z, chalcogen Z); FAKE_WIEN2K_A_TRUE overrides
A_TRUE = {(42, 16): 6.05, (42, 34): 6.28, (74, 16): 6.04, (74, 34): 6.27}
D_TRUE = 2.95  # bohr: the model's relaxed M-X height


def case() -> str:
    return Path.cwd().name


def fail(program: str, message: str) -> None:
    Path(f"{program}.error").write_text(f"'{program}' - {message}\n")
    log(f"> stop error {program}: {message}")
    sys.exit(1)


def log(line: str) -> None:
    with open(f"{case()}.dayfile", "a") as f:
        if f.tell() == 0:
            f.write("FAKE WIEN2k test double -- not WIEN2k\n")
        f.write(line + "\n")


def option(args, name, cast=str, default=None):
    if name in args:
        i = args.index(name)
        if i + 1 >= len(args):
            fail(Path(sys.argv[0]).name, f"option {name} needs a value")
        return cast(args[i + 1])
    return default


# -- case.struct (fixed columns, read independently of tmdflow) ----------------------------
def read_struct(path=None):
    lines = Path(path or f"{case()}.struct").read_text().splitlines()
    nat = int(lines[1][27:30])
    a, b, c = (float(lines[3][i:i + 10]) for i in (0, 10, 20))
    gamma = float(lines[3][50:60])
    i, sites = 4, []
    for _ in range(nat):
        if not lines[i].startswith("ATOM"):
            fail("struct", f"line {i + 1}: expected 'ATOM', got {lines[i]!r}")
        pos = [tuple(float(lines[i][p:p + 10]) for p in (12, 25, 38))]
        mult = int(lines[i + 1][15:17])
        for k in range(mult - 1):
            pos.append(tuple(float(lines[i + 2 + k][p:p + 10]) for p in (12, 25, 38)))
        i += 1 + mult
        rmt, z = float(lines[i][40:50]), float(lines[i][55:65])
        sites.append({"pos": pos, "rmt": rmt, "z": int(round(z)), "line": i})
        i += 4
    return {"lines": lines, "a": a, "c": c, "gamma": gamma, "sites": sites, "tail": i}


def has_inversion(st) -> bool:
    atoms = [(s["z"], p) for s in st["sites"] for p in s["pos"]]
    def same(p, q):
        return all(abs(((x - y + 0.5) % 1.0) - 0.5) < 1e-5 for x, y in zip(p, q))
    for z, p in atoms:
        minus = tuple(-x for x in p)
        # inversion centre at the origin or at the metal (monolayer metal sits at z = 1/2)
        if not any(zz == z and same(minus, q) for zz, q in atoms):
            break
    else:
        return True
    metal = next(p for z, p in atoms if z in LAMBDA_VB)
    for z, p in atoms:
        image = tuple(2 * m - x for m, x in zip(metal, p))
        if not any(zz == z and same(image, q) for zz, q in atoms):
            return False
    return True


def electrons(st) -> int:
    return sum(VALENCE[s["z"]] * len(s["pos"]) for s in st["sites"])


def metal_z(st) -> int:
    return next(s["z"] for s in st["sites"] if s["z"] in LAMBDA_VB)


def a_true(st):
    override = os.environ.get("FAKE_WIEN2K_A_TRUE")
    if override:
        return float(override)
    chalcogen = next(s["z"] for s in st["sites"] if s["z"] not in LAMBDA_VB)
    return A_TRUE.get((metal_z(st), chalcogen))


def height(st) -> float:
    metal = next(s for s in st["sites"] if s["z"] in LAMBDA_VB)["pos"][0]
    x = next(s for s in st["sites"] if s["z"] not in LAMBDA_VB)["pos"][0]
    dz = abs(((x[2] - metal[2] + 0.5) % 1.0) - 0.5)
    return dz * st["c"]


# -- Fortran-style numbers --------------------------------------------------------------------
def fortran_e(x: float, width: int = 19, digits: int = 12) -> str:
    if x == 0:
        s = f"0.{'0' * digits}E+00"
    else:
        e = math.floor(math.log10(abs(x))) + 1
        m = x / 10 ** e
        if abs(m) >= 1.0:
            m, e = m / 10, e + 1
        s = f"{m:.{digits}f}E{e:+03d}"
    return s.rjust(width)


# -- the band model ---------------------------------------------------------------------------
def f_odd(k1, k2):
    return (math.sin(2 * math.pi * k1) + math.sin(2 * math.pi * k2) - math.sin(2 * math.pi * (k1 + k2))) / (
        3 * math.sqrt(3) / 2)


def g_even(k1, k2):
    return abs(1 + cmath.exp(2j * math.pi * k1) + cmath.exp(-2j * math.pi * k2)) ** 2 / 9


def levels(st, k1, k2, spin_orbit: bool):
    """Made-up levels (Ry), ascending: deep bands, the top valence band, the conduction band,
    higher bands; with spin-orbit every level is a spinor level (twice as many)."""
    nocc = electrons(st) // 2
    lv, lc = LAMBDA_VB[metal_z(st)], LAMBDA_CB[metal_z(st)]
    inv = has_inversion(st)
    ev = 0.40 - 0.0040 * g_even(k1, k2)
    ec = 0.52 + 0.05 * g_even(k1, k2)
    layers = 2 if inv else 1  # bulk 2H: two layers, every level twice (inversion + time reversal)
    deep = [-1.0 + 0.02 * i for i in range(nocc - layers)]
    high = [0.80 + 0.1 * i for i in range(4)]
    if not spin_orbit:
        return sorted(deep + [ev, ec] * layers + high)
    f = abs(f_odd(k1, k2)) if inv else f_odd(k1, k2)
    pairs = [ev + lv / 2 * f, ev - lv / 2 * f, ec + lc / 2 * f, ec - lc / 2 * f] * layers
    return sorted([e for e in deep for _ in (0, 1)] + pairs + [e for e in high for _ in (0, 1)])


def read_klist_band():
    pts = []
    for line in Path(f"{case()}.klist_band").read_text().splitlines():
        if line.startswith("END"):
            return pts
        try:
            ix, iy, iz, div = (int(line[10 + 10 * j:20 + 10 * j]) for j in range(4))
            weight = float(line[50:55])
        except ValueError:
            fail("lapw1", f"case.klist_band line {line!r} is not A10,4I10,F5.1")
        pts.append((line[:10].strip(), ix / div, iy / div, iz / div, weight))
    fail("lapw1", "case.klist_band has no END line")


def write_energy(path, st, kpts, spin_orbit: bool):
    out = []
    for _ in st["sites"]:  # linearisation energies, 2 lines per inequivalent atom
        out.append("".join(f"{0.3:9.5f}" for _ in range(13)))
        out.append("".join(f"{0.3:9.5f}" for _ in range(13)))
    for name, k1, k2, k3, w in kpts:
        e = levels(st, k1, k2, spin_orbit)
        out.append(f"{fortran_e(k1)}{fortran_e(k2)}{fortran_e(k3)}{name:<10}{2345:6d}{len(e):6d}{w:5.1f}")
        out += [f"{i:12d}{x:22.12f}" for i, x in enumerate(e, start=1)]
    Path(path).write_text("\n".join(out) + "\n")


def machines_jobs() -> int:
    m = Path(".machines")
    if not m.is_file():
        fail("lapw1", "-p given but no .machines file")
    n = sum(1 for l in m.read_text().splitlines() if l.startswith("1:"))
    if not n:
        fail("lapw1", ".machines lists no '1:host' line")
    return n
