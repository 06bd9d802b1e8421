"""The manager's services: the logic behind the thin REST routers.

Each service is an object built once by :func:`swarmdeploy.manager.app.create_app` with what
it needs (storage, event hub, dispatcher, clock, keys) and raises
:mod:`swarmdeploy.manager.errors` for the routers to map to HTTP.
"""
