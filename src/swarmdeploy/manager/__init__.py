"""swarmdeploy.manager."""
