"""Physics analysis of band data: spin splittings, valley offsets, gaps."""
