"""Results store: MongoDB (or tmdflow's safe embedded file store) holding FireWorks' LaunchPad
collections and tmdflow's own ``tasks``, ``materials`` and ``bandstructures``."""
