"""The Atelier agent that runs on each machine's Raspberry Pi."""

__version__ = "0.1.0"
