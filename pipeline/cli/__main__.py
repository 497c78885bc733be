"""python -m pipeline.cli: the tonghop command."""

import sys

from pipeline.cli.commands import main

sys.exit(main())
