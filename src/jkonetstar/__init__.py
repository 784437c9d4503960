"""JKOnet*: learning the energy of diffusion processes from population snapshots."""

__version__ = "0.1.0"
