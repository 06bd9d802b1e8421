"""swarmdeploy.crypto."""
