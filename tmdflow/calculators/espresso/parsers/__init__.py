"""Plain-function parsers for Quantum ESPRESSO outputs (no database or workflow imports)."""

from .bandsx import parse_bandsx_sigma_inplane, parse_bandsx_sigma_z
from .stdout import ProgramClock, PwStdout, parse_program_clock, parse_pw_stdout
from .xml import PwXmlOutput, parse_pw_xml

__all__ = ["ProgramClock", "PwStdout", "parse_program_clock", "PwXmlOutput", "parse_bandsx_sigma_inplane", "parse_bandsx_sigma_z", "parse_pw_stdout", "parse_pw_xml"]
