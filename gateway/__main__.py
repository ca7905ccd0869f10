"""python -m gateway runs the dirgw command line."""

import sys

from gateway.cli import main

sys.exit(main())
