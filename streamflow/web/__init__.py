"""The running job's web side: its dashboard and its Prometheus endpoint.

- :mod:`~streamflow.web.service`: binds, serves and stops them with the job
  (``env.set_web_ui(port)``, ``env.set_metrics_port(port)``).
- :mod:`~streamflow.web.server`: the aiohttp applications and their routes.
- :mod:`~streamflow.web.api`: the JSON the page polls.
- ``static/``: the page (plain HTML, JavaScript and SVG; nothing fetched from elsewhere).
"""

from __future__ import annotations

from streamflow.web.endpoint import HttpEndpoint

__all__ = ["HttpEndpoint"]  # the service (aiohttp) is imported only by jobs that serve
