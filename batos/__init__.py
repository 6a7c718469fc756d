"""BAT OS kernel: a persistent, self-extending object graph served over ZeroMQ."""

__version__ = "0.2.0"
