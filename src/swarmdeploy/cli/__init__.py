"""swarmdeploy.cli."""
