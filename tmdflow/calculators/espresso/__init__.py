"""Quantum ESPRESSO adapter: pw.x (scf, bands) and bands.x (spin texture)."""
