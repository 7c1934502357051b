"""abgate's composition root: the ``abgate`` command line, embedded servers and the demo.

The domain packages (experiments, registry, batch, gateway, analysis, loadtests) take plain
values through constructors; this package reads settings and wires them together.
"""
