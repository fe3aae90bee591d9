"""Mesh input: sources and their layouts, object identity, loading, geometry, point sampling.

``sources`` finds the objects of a folder (ShapeNet, ModelNet, a plain folder) or the
procedural library; ``objects`` is the identity every later stage keys on; ``load`` reads
one mesh file into a trimesh scene with precise errors; ``geometry`` holds the canonical
frame; ``sampling`` draws surface points; ``ply`` reads point-cloud PLY files.
"""
