"""FireWorks' LaunchPad with the one thread race of a rocket closed.

A FireWorks rocket runs a ping thread beside the step.  When the step ends, the rocket stops that
thread -- which wakes and pings the launch one last time -- and at the same moment records the
launch's end itself (``complete_launch``).  On MongoDB the two writes are independent; on the
embedded store (mongomock, not thread-safe) the rocket's replace of the launch document can hide
it from the ping's lookup, and FireWorks' ping thread dies with ``ValueError: No Launch exists``,
a traceback on the user's terminal (measured: clean-clone CI of 27af14b).

:class:`SerializedLaunchPad` makes the two methods take one lock, and the embedded store's
checkpoint takes it too (a ping during a long step must not change a collection being written
out).  Nothing else changes: the ping still records liveness while a step runs.
"""

from __future__ import annotations

from fireworks import LaunchPad

from .embedded import LAUNCH_WRITES  # also held by the embedded store's checkpoint

__all__ = ["SerializedLaunchPad"]


class SerializedLaunchPad(LaunchPad):
    """A LaunchPad whose launch pings and launch completions never overlap."""

    def ping_launch(self, launch_id, ptime=None, checkpoint=None) -> None:
        with LAUNCH_WRITES:
            super().ping_launch(launch_id, ptime=ptime, checkpoint=checkpoint)

    def complete_launch(self, launch_id, action=None, state="COMPLETED"):
        with LAUNCH_WRITES:
            return super().complete_launch(launch_id, action=action, state=state)
