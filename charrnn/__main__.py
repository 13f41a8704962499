"""`python -m charrnn` runs the command line."""

import sys

from charrnn.cli import main

sys.exit(main())
