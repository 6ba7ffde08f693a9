"""The top layer of lab: executors (`launch`), the one orchestrator (`sweep`) and Slurm helpers (`slurm`).

It plans stage calls, submits them (in-process, local processes or Slurm), waits and collects.
"""
