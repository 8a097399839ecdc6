"""Command-line entry points (thin wrappers)."""
