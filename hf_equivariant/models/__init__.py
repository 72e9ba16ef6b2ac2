"""Model wrappers, one folder per family, on the shared base in :mod:`hf_equivariant.models.base`."""
