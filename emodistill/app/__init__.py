"""The top floor: the cross-stage commands (`emodistill` CLI, demo, compare
+ report, predict, streams + timeline, bench, env).

These may import every stage; no stage and nothing in `emodistill.core` imports them.
"""
