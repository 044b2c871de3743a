"""The member catalogue and every member, route assignment, execution-provider selection,
registry loading and the ensemble, for the scoring worker."""
