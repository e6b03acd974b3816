"""
The entry point for ``kopf run operator/handlers.py``.

The handlers live in the installable package (``deploywatch.handlers``, where
the choice of Kopf handlers is explained) so that the container image can run
``kopf run -m deploywatch.handlers`` without this repository's layout. This file
only imports them, which registers them with Kopf.

Mind the name of this folder: ``kopf run`` puts ``operator/`` first on
``sys.path``, so no file here may share a name with a standard-library module.
"""
import deploywatch.handlers  # noqa: F401  (importing registers the handlers)
