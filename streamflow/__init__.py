"""streamflow: an asyncio-native stream processor."""
