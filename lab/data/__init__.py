"""Datasets: the sharded on-disk format for synthetic sets and the registry of real datasets."""
