"""Data: loaders for every source into the one sample schema (see ``schema.py``), and ShapeWorld."""
