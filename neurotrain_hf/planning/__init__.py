"""Memory planning for distributed training: `neurotrain plan` (docs/distributed.md)."""
