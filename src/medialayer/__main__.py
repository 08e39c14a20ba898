"""`python -m medialayer` is the `medialayer` command."""

from medialayer.cli import app

if __name__ == "__main__":  # worker processes re-import this module as __mp_main__
    app(prog_name="medialayer")
