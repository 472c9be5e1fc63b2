"""The bounded source over an in-memory sequence, as a connector.

It is defined in :mod:`streamflow.api.collection`, next to the connector contract,
because ``env.from_collection`` reads it and the core never imports ``connectors``;
this module keeps the import path of every other connector.
"""

from __future__ import annotations

from streamflow.api.collection import CollectionReader, CollectionSource

__all__ = ["CollectionReader", "CollectionSource"]
