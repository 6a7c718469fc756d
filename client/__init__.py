"""The Architect's client for the BAT OS kernel."""
