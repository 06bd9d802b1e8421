"""swarmdeploy.gui."""
