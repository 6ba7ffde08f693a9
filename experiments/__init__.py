"""experiments: recipes (Hydra configs under conf/) and the `lab` command line. Nothing imports this package."""
