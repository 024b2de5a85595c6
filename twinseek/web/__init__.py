"""The web app (``twinseek serve``): search with live progress, masks over the videos, the twin inspector,
ingest and eval reports, over one store. Needs the ``web`` extra (fastapi, uvicorn, jinja2, python-multipart).

```python
from twinseek.web import WebSettings, create_app

app = create_app(WebSettings(store="my-store"))  # any ASGI server; or `twinseek serve --store my-store`
```
"""

from __future__ import annotations

from twinseek.web.app import background_server, create_app, serve
from twinseek.web.settings import WebSettings, check_bind

__all__ = ["WebSettings", "background_server", "check_bind", "create_app", "serve"]
