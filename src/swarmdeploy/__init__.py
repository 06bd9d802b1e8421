"""swarmdeploy: secure bulk over-the-air deployment to fleets of IoT and edge Linux devices."""

__version__ = "0.1.0"
