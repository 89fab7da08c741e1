"""Read side of closedloop."""
