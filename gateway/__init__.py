"""dirgw: Microsoft 365 contacts over read-only LDAP for desk phones and PBXs."""

__all__ = ["__version__"]

__version__ = "0.1.0"
