"""Preloaded by the bulk pool's forkserver (see `lifeline.pool_context`): importing it binds the
forkserver's life to the process that started it. It does nothing else."""

from medialayer.lifeline import die_with_parent

die_with_parent()
