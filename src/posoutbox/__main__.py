"""Run the command line as ``python -m posoutbox``."""

from posoutbox.cli import main

main()
