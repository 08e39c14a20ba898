"""`python -m medialayer` is the `medialayer` command."""

from medialayer.cli import app

app(prog_name="medialayer")
