"""era_core: a reproducible implementation of ERA (Align then Train: Efficient Retrieval Adapter Learning)."""

__version__ = "0.1.0"
