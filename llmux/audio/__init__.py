"""Audio in and out: decode any container by content, encode the formats clients ask for.

Needs the ``audio`` extra (PyAV + numpy); the core server imports this package only when an
audio route is first used.
"""
