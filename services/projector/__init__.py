"""The projector: runs the installed projections against the event log."""
