"""The ground floor: config, registry, errors, utils, the input contract (`contract`) and the model contract
(`model`, with the layers teacher and student share in `layers`), checkpoint, data, evaluate, metrics, optim,
the shared training skeleton (`train`), timing, flops and stand-in inputs (`inputs`).

Nothing here imports a stage (`teacher`, `student`, `distill`, `export`) or the commands in `emodistill.app`;
an import-linter contract in pyproject.toml keeps it so (docs/architecture.md).
"""
