"""lfa-repro: Loss Function Assessment (LFA) and F-ECE reproduction pipeline."""

__version__ = "0.1.0"
