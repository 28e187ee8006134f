"""`python -m bench [--quick] [--plot FILE.png]`: every benchmark of the project, one table (bench/suite.py)."""

import sys

from bench import suite

sys.exit(suite.main())
