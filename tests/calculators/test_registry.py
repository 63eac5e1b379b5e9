"""The calculator registry (tmdflow.calculators.base): the built-in codes are data, so their names
and capabilities are known without importing an adapter; an adapter module is imported when an
adapter is built; other codes register a factory."""

import subprocess
import sys

import pytest

from tmdflow.calculators import base
from tmdflow.errors import InputError
from tmdflow.settings import load_settings


def test_names_and_capabilities_import_no_adapter():
    code = ("import sys\n"
            "from tmdflow.calculators.base import capabilities, registered_calculators\n"
            "from tmdflow.identity import preset_values\n"
            "from tmdflow.presets import load_preset\n"
            "names = registered_calculators()\n"
            "caps = [sorted(capabilities(n)) for n in names]\n"
            "preset_values(load_preset('test'), 'espresso')\n"
            "print(names, [m for m in sys.modules if m.endswith('.adapter')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['elk', 'espresso', 'wien2k'] []"


def test_each_builtin_adapter_is_loaded_from_its_entry_and_declares_its_capabilities():
    settings = load_settings()
    for name, entry in base.BUILTIN_CALCULATORS.items():
        calc = base.get_calculator(name, settings)
        assert calc.name == name and type(calc).__module__ == entry.adapter.partition(":")[0]
        assert calc.capabilities == entry.capabilities == base.capabilities(name)
    assert "relaxation" in base.capabilities("elk") and "band_map" not in base.capabilities("wien2k")


def test_another_code_registers_a_factory():
    """In a process of its own: a registered code stays registered for the process."""
    code = ("from tmdflow.calculators import get_calculator, register_calculator, registered_calculators\n"
            "from tmdflow.calculators.base import capabilities\n"
            "register_calculator('toy', lambda settings: ('toy adapter', settings), frozenset({'scf'}))\n"
            "print(registered_calculators(), sorted(capabilities('toy')), get_calculator('toy', 's'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['elk', 'espresso', 'toy', 'wien2k'] ['scf'] ('toy adapter', 's')"
    with pytest.raises(InputError, match="unknown calculator 'nope'"):
        base.capabilities("nope")
