"""WIEN2k (FP-LAPW, second-variational spin-orbit) adapter: file formats, parsers, runner."""
