"""All file and object-store I/O of nova-ray: inputs, results, publishing."""

from .errors import InputError

__all__ = ["InputError"]
