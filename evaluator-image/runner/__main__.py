"""`python -m evalkube.runner` is `evalkube-runner`."""

import sys

from evalkube.runner.cli import main

sys.exit(main())
