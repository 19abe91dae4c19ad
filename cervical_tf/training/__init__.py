"""Training and in-training evaluation on official.vision: config, task, runner, Orbit actions."""
