"""swarmdeploy.transport."""
