"""The package version, on the ground floor so every layer can record it."""

__version__ = "0.1.0"
