# The one place the version is defined; pyproject.toml reads it with a regex.
__version__ = "0.1.0"
