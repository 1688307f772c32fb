"""The ground floor: config, registry, checkpoint, model contract, data, metrics, utils.

Nothing here imports a stage (`teacher`, `student`, `distill`, `export`) or the commands in `emodistill.app`;
an import-linter contract in pyproject.toml keeps it so (docs/architecture.md).
"""
