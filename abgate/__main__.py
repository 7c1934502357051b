"""``python -m abgate`` runs the console script."""

from abgate.cli import main

main()
