"""Pseudopotentials: ld1.x recipes (data) -> validated, checksummed, cached UPF files."""

from .library import (
    PseudoFile,
    PseudoSet,
    ensure_pseudopotentials,
    ensure_pseudopotentials_by_element,
    user_pseudopotentials,
)
from .upf import UpfHeader, read_upf_header

__all__ = [
    "PseudoFile",
    "PseudoSet",
    "UpfHeader",
    "ensure_pseudopotentials",
    "ensure_pseudopotentials_by_element",
    "read_upf_header",
    "user_pseudopotentials",
]
