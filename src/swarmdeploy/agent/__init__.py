"""swarmdeploy.agent."""
