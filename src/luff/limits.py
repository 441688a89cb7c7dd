"""Defaults of the embedded registry's limits, importable without the server (its CLI help).

:mod:`luff.server` imports aiohttp; ``luff registry --help`` only needs these.
"""

#: An upload untouched for this many seconds is dropped (its slot and file freed).
DEFAULT_UPLOAD_TIMEOUT = 600.0
#: Uploads in progress at once; beyond, starting one answers 429 TOOMANYREQUESTS.
DEFAULT_MAX_UPLOADS = 1000
