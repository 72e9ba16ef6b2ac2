"""Model wrappers, one sub-package per task."""
