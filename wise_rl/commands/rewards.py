"""``wise-rl rewards``: the reward names a recipe's ``reward_funcs`` accepts, what each scores and its options.

    wise-rl rewards            # a table: name, options, one-line summary
    wise-rl rewards --json     # the same as JSON (name, summary, options, source)

Plug-ins show up too: a module dropped into ``rewards/`` or named in ``WISE_RL_REWARD_MODULES``.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from rewards import WISE_REWARDS, describe_rewards

    infos = describe_rewards()
    if args.json:
        print(json.dumps(infos, indent=2))
        return 0
    width = max(len(i["name"]) for i in infos)
    for info in infos:
        mark = "*" if info["name"] in WISE_REWARDS else " "
        options = f" [{', '.join(info['options'])}]" if info["options"] else ""
        print(f"{mark} {info['name']:<{width}}  {info['summary'].replace('``', '')}{options}")
    print("\n* in rewards.WISE_REWARDS. Use in a GRPO recipe: reward_funcs: [name, ...]; options: reward_options: {name: {option: "
          "value}}; your own: a module in rewards/ with @register_reward(\"name\"), or a dotted path pkg.mod:fn.")
    return 0
