"""Plain-function parsers for Quantum ESPRESSO outputs (no database or workflow imports)."""

from .bandsx import parse_bandsx_sigma_inplane, parse_bandsx_sigma_z
from .stdout import PwStdout, parse_pw_stdout
from .xml import PwXmlOutput, parse_pw_xml

__all__ = ["PwStdout", "PwXmlOutput", "parse_bandsx_sigma_inplane", "parse_bandsx_sigma_z", "parse_pw_stdout", "parse_pw_xml"]
