"""The HTTP API (issue 6, in progress): see `driftline.api.app`."""
