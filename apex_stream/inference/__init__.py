"""Model members, execution-provider selection and registry loading for the scoring worker."""
