"""GET /v1/usage: the calling key's usage (``start``/``end`` UTC days, ``group_by`` model,day)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromQuery

from llmux.protocol.usage import UsageReport
from llmux.services.access import current_client
from llmux.services.usage import UsageService


class UsageController(Controller):
    path = "/usage"

    @get("/")
    async def usage(
        self,
        usage: NamedDependency[UsageService],
        start: FromQuery[str | None] = None,
        end: FromQuery[str | None] = None,
        group_by: FromQuery[str | None] = None,
    ) -> UsageReport:
        client = current_client() or ""  # the guard always binds a key here
        return await usage.report(start=start, end=end, group_by=group_by, client=client, groups=("model", "day"))
