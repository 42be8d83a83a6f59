"""What every layer shares: the artifacts passed between verbs."""
