"""Entry point: ``python -m batos``."""
import sys

from batos.app import main

sys.exit(main())
