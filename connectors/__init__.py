"""Sources and sinks, importable as ``streamflow.connectors``."""
