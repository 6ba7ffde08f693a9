"""Evaluation of trained models: benchmarks that score generated text (`lab.eval.pfgen`)."""
