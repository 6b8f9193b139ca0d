"""Running one experiment: config and run identity, records, the Trainer, fitting, tracking."""
