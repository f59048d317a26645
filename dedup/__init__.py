"""Exact and perceptual-hash duplicate detection for small grayscale images."""
