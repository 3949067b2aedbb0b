"""Townships: the work queues they check in the field, and the verdicts they hand back."""
