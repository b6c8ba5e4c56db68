"""The web console: task list, task map, results and script playground, served at `/`."""

from eobatch.web.api import router as api_router
from eobatch.web.pages import install_pages

__all__ = ["api_router", "install_pages"]
