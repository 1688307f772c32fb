"""The top floor: the cross-stage commands (`emodistill` CLI, demo, compare, predict, streams, env).

These may import every stage; no stage and nothing in `emodistill.core` imports them.
"""
