"""Command-line front ends; ``cellcount`` is :func:`cellcount.cli.main.main`."""
