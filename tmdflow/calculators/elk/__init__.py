"""Elk (all-electron FP-(L)APW+lo, second-variational spin-orbit coupling) through the calculator protocol."""
