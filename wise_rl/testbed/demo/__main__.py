"""``python -m wise_rl.testbed.demo --child …``: one demo stage in a child process."""

import sys

from wise_rl.testbed.demo import _child_main

sys.exit(_child_main())
