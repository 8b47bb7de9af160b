"""The tools: what nothing else in era_core imports (CLI, torchrun encode, dry run, checks, bench, README generator)."""
