"""The read models closedloop ships, each a Projection registered by entry point."""
