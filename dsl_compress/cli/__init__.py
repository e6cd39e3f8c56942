"""The dsl-compress command: thin subcommands over the library verbs, exit statuses, output formats."""

from dsl_compress.cli.main import main

__all__ = ["main"]
