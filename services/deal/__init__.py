"""The deal context: opportunities, stages, wins, losses and recognised revenue."""
