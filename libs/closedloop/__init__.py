"""closedloop: the event-sourced backbone of closed-loop marketing."""
