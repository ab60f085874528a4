"""The one error a user can cause in the data pipeline."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data input (missing folder, single class, unsafe archive): a message, exit code 2."""
