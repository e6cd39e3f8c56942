"""`python -m dsl_compress.cli`: the dsl-compress command."""

import sys

from dsl_compress.cli import main

sys.exit(main())
