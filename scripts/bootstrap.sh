#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: Debian packages, the virtualenv, the pseudopotentials.
# The SLURM packages (slurm-wlm, munge) are for the test suite's single-node cluster
# (tests/conftest.py starts it as root); tmdflow itself does not need them.
# Used by `make run` and `make test`; safe to run again (does only what is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TMDFLOW_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
APT_PACKAGES=(quantum-espresso openmpi-bin libopenblas0 elk-lapw wannier90)
# for the test suite's single-node SLURM cluster only; without them (or not as root) those tests skip
SLURM_PACKAGES=(slurm-wlm munge)
# for the test that compiles `tmdflow table1 --format latex` with pdflatex (else it checks the LaTeX's balance only)
LATEX_PACKAGES=(texlive-latex-base)

say() { printf '[setup] %s\n' "$*" >&2; }

missing_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  echo "${missing[@]:-}"
}

# 1. Debian packages (Quantum ESPRESSO 6.7: pw.x, ld1.x, bands.x, projwfc.x, pw2wannier90.x; OpenMPI; OpenBLAS;
#    Elk 8.4 (elk-lapw); Wannier90 3.1 (wannier90.x, the wannier_map step);
#    SLURM 22.05 + munge for the queue tests)
missing="$(missing_packages "${APT_PACKAGES[@]}")"
optional="$(missing_packages "${SLURM_PACKAGES[@]}" "${LATEX_PACKAGES[@]}")"
if [ -n "$optional" ] && { [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; }; then
  missing="${missing:+$missing }$optional"
elif [ -n "$optional" ]; then
  say "note: $optional not installed and not root: the SLURM queue tests (and the pdflatex run of table1) will be skipped"
  say "      (install as root: sudo apt-get install $optional)"
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "installing Debian packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing Debian packages with sudo: $missing"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    say "ERROR: missing Debian packages: $missing"
    say "       install them as root:  sudo apt-get install $missing"
    say "       (or put your own pw.x/ld1.x/bands.x/projwfc.x on PATH and set TMDFLOW_SKIP_APT=1)"
    [ "${TMDFLOW_SKIP_APT:-0}" = "1" ] || exit 1
  fi
fi
for exe in pw.x ld1.x bands.x projwfc.x pw2wannier90.x wannier90.x; do
  command -v "$exe" >/dev/null 2>&1 || { say "ERROR: $exe not on PATH after installation"; exit 1; }
done

# 2. The virtualenv with tmdflow and its dependencies (re-installed when pyproject.toml changes)
stamp="$VENV/.tmdflow-installed"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtualenv $VENV"
  "$PY" -m venv "$VENV" || { say "ERROR: '$PY -m venv' failed; install python3-venv"; exit 1; }
fi
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  say "installing tmdflow and dependencies into $VENV (first time: a few minutes)"
  log="$VENV/pip-install.log"
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip && "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"; } >"$log" 2>&1; then
    say "ERROR: pip install failed; last lines of $log:"
    tail -n 30 "$log" >&2
    exit 1
  fi
  touch "$stamp"
fi

# 3. Pseudopotentials: generated with ld1.x from inputs/pseudo_recipes (cached, checksummed)
say "checking pseudopotentials (generated once with ld1.x, then cached)"
"$VENV/bin/tmdflow" pseudo build --family pslibrary-paw >/dev/null
"$VENV/bin/tmdflow" pseudo build --family pslibrary-nc >/dev/null
say "ready"
