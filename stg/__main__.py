"""`python -m stg compare|sweep ...`; `python -m stg --help` says more."""

import sys

from .cli import main

sys.exit(main())
