"""`python -m dsl_compress`: the dsl-compress command."""

import sys

from dsl_compress.cli import main

sys.exit(main())
