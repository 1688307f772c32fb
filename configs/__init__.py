"""The packaged recipes, hardware profiles and budgets (YAML), installed as `emodistill.configs`.

Found with `importlib.resources` (`emodistill.core.utils.CONFIG_DIR`); `emodistill config list` lists them.
"""
