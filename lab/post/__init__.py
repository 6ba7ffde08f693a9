"""Post-training of PLaMo models: pruning, distillation, SFT, DPO, merging and quantization."""
