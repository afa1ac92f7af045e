"""Errors of dbosify's own, beside temporalio's (which dbosify raises unchanged)."""

from __future__ import annotations


class DbosifyError(Exception):
    """Base class of the errors dbosify raises itself."""


class DatabaseError(DbosifyError):
    """The database URL is malformed, the database cannot be reached, or it cannot be used.

    The message names the URL without its password and says what to do.
    """


class ConfigurationError(DbosifyError):
    """dbosify was asked for something it cannot do in this process (e.g. a second database)."""
