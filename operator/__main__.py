"""``python -m tidelog.operator``: the same as ``tidelog operator``."""

import sys

from tidelog.operator.main import main

sys.exit(main())
