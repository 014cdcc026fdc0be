"""Preprocessing: image tiling and loading, conversation templates, the MedGptProcessor (issue 3)."""
