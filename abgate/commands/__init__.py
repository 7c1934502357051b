"""Command groups of the ``abgate`` console script, one module per group."""
