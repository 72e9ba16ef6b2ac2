"""Datasets the project builds or bundles offline (no downloads): handwritten digits, ..."""
