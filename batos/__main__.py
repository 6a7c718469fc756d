"""Entry point: ``python -m batos``."""
import sys

from batos.kernel import main

sys.exit(main())
