"""`python -m tflip`: the `tflip` command."""

import sys

from tflip.cli import main

sys.exit(main())
