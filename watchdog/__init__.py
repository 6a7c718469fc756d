"""The BAT OS watchdog: supervises the kernel (not built yet)."""
