"""A run: assembly from a config, lifecycle, state files, progress and summary."""
