"""The bottom layer: registries, configs, run directories, checkpoints, distributed context, the results table.

Nothing here imports another part of the lab; everything else may import it.
"""
