"""The dsl-compress command: thin subcommands over the library verbs, exit statuses, output formats.

The top of the package: may import every stage; nothing imports it. The only place that prints.
"""

from dsl_compress.cli.main import main

__all__ = ["main"]
