"""The BAT OS watchdog: a stateless supervisor that keeps the kernel alive and
replaces it on demand (the Ship of Theseus upgrade) without losing the image."""
