"""Build notMNIST into a curated Hugging Face dataset."""

__version__ = "0.1.0"
