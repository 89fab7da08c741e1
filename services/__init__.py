"""The services of closedloop, one package per bounded context."""
