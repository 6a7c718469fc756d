"""``python -m watchdog``: not built yet; it says so rather than pretending to supervise."""
import sys

print("watchdog: not built yet; run the kernel directly with ./puter.sh kernel", file=sys.stderr)
sys.exit(2)
