"""Driftline core: configuration, event contracts, the ClickHouse store, the CLI.

The modules here import nothing from collector/, detectors/, alerts/ or
dashboards/, except `driftline.cli`, which wires the stages together.
"""

__version__ = "0.1.0"
