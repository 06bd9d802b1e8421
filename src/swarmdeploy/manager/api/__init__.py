"""The REST and WebSocket layer: thin routers over the services, schemas, error mapping."""
