"""Entry points that join the services: the operator CLI, `make run` and the demo."""
