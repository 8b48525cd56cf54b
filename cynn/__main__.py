"""``python -m cynn``: the same command line as the ``cynn`` script."""
import sys

from .cli import main

sys.exit(main())
