"""The one version of the distribution: the client, the proxy and pyproject.toml read it here."""

__version__ = "0.1.0"
