"""Training and evaluation on mmengine's Runner: config building, hooks, metrics, checkpoints."""
