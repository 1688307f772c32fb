"""`emodistill config list | show`: the recipes, hardware profiles and budgets that ship with the package.

Every command that takes `--config` accepts a packaged recipe by name (`ravdess_s`, `distill/ravdess_s`) from
any folder, or a path to your own YAML; `--budget` and `--profile` take a packaged name or a YAML path.
`emodistill config show NAME > my_recipe.yaml` copies one to edit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.config import RECIPE_KINDS, ConfigError, packaged_configs, resolve_config_path, yaml_header
from ..core.utils import CONFIG_DIR


def _item(name: str, kind: str, path: Path) -> dict:
    command, description = yaml_header(path)
    return {"name": name, "kind": kind, "path": str(path), "command": command, "description": description}


def catalogue() -> dict[str, list[dict]]:
    """{"recipes": [...], "profiles": [...], "budgets": [...], "calibration": [...]}, each item name/kind/path/command/description."""
    from ..export.profiles import BUDGET_DIR, HARDWARE_DIR, list_budgets, list_profiles

    recipes = [_item(Path(name).name, Path(name).parts[0], f) for name, f in packaged_configs().items()]
    # the packaged ones only ($EMODISTILL_HARDWARE_DIR may add the user's own to what --budget finds)
    profiles = [_item(n, "profile", HARDWARE_DIR / f"{n}.yaml") for n in list_profiles()
                if (HARDWARE_DIR / f"{n}.yaml").is_file()]
    budgets = [_item(n, "budget", BUDGET_DIR / f"{n}.yaml") for n in list_budgets()
               if (BUDGET_DIR / f"{n}.yaml").is_file()]
    # data the estimator reads (export/calibrate.py writes it): listed so that every packaged YAML is accounted for
    calibration = [{**_item(f.stem, "calibration", f), "command": "emodistill calibrate --write-band",
                    "description": "error band of estimated RTX latencies, leave-one-GPU-out (docs/export.md)"}
                   for f in sorted((HARDWARE_DIR / "calibration").glob("*.yaml"))]
    return {"recipes": recipes, "profiles": profiles, "budgets": budgets, "calibration": calibration}


def render(cat: dict[str, list[dict]]) -> str:
    width = max(len(f"{i['kind']}/{i['name']}") for items in cat.values() for i in items) + 2
    lines = [f"packaged configs in {CONFIG_DIR}"]
    titles = {"recipes": "recipes (--config NAME)", "profiles": "hardware profiles (--profile / --budget NAME)",
              "budgets": "budgets (--budget NAME)",
              "calibration": "estimator calibration (emodistill calibrate --write-band)"}
    for section, items in cat.items():
        lines.append(f"\n{titles[section]}")
        for i in items:
            name = f"{i['kind']}/{i['name']}" if section == "recipes" else i["name"]
            lines.append(f"  {name:<{width}}{i['description']}")
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    cat = catalogue()
    if args.kind:
        cat = {k: [i for i in v if i["kind"] == args.kind or (args.kind == "hardware" and k != "recipes")]
               for k, v in cat.items()}
        cat = {k: v for k, v in cat.items() if v}
    print(json.dumps(cat, indent=1) if args.json else render(cat))
    return 0


def run_hardware(args: argparse.Namespace) -> int:
    """`emodistill profiles` / `emodistill budgets`: one line each."""
    items = catalogue()[args.section]
    if args.json:
        print(json.dumps(items, indent=1))
    else:
        width = max(len(i["name"]) for i in items) + 2
        print("\n".join(f"{i['name']:<{width}}{i['description']}" for i in items))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..export.profiles import BUDGET_DIR, HARDWARE_DIR

    try:
        path = resolve_config_path(args.name)
    except ConfigError:
        hw = [d / f"{args.name}.yaml" for d in (BUDGET_DIR, HARDWARE_DIR)]
        path = next((p for p in hw if p.is_file()), None)
        if path is None:
            raise
    print(path.read_text(), end="")
    return 0


def register(sub) -> None:
    from ..core.cli_args import add_json

    p = sub.add_parser("config", help="list or print the packaged recipes, hardware profiles and budgets",
                       description="See the recipes, hardware profiles and budgets that ship with the package, "
                                   "and copy one to edit.", epilog=__doc__.split("\n\n", 1)[1])
    csub = p.add_subparsers(dest="config_command", metavar="{list,show}", required=True)
    ls = csub.add_parser("list", help="one line per packaged recipe, profile and budget",
                         description="List the packaged recipes, hardware profiles and budgets, one line each.")
    ls.add_argument("--kind", choices=[*RECIPE_KINDS, "hardware"], help="only this kind")
    add_json(ls, help="print JSON (name, kind, path, command, description)")
    ls.set_defaults(func=run_list)
    sh = csub.add_parser("show", help="print a packaged YAML (to copy and edit)",
                         description="Print a packaged recipe, profile or budget YAML, to copy and edit.")
    sh.add_argument("name", help="recipe (ravdess_s, distill/ravdess_s), profile or budget name")
    sh.set_defaults(func=run_show)
    for section, what in (("profiles", "hardware profiles (--profile NAME, or --budget NAME: its default budget)"),
                          ("budgets", "latency / memory budgets (--budget NAME)")):
        hp = sub.add_parser(section, help=f"list the packaged {what}, one line each",
                            description=f"List the packaged {what}, one line each; `emodistill config show NAME` "
                                        "prints one.")
        add_json(hp, help="print JSON (name, path, description)")
        hp.set_defaults(func=run_hardware, section=section)


__all__ = ["catalogue", "render", "register"]
