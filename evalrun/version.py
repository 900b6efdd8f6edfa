"""evalrun's version, in a module of its own so that nothing imports the package's ``__init__``
(which exposes the Python API lazily) from inside the package."""

__version__ = "0.2.0"
