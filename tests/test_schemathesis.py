"""Property-based requests generated from /openapi.json: no operation answers with a 5xx, and
every answer is one the document declares (status, content type, body schema and error code)."""

from __future__ import annotations

from typing import Any

import schemathesis
import threadbox
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from threadbox.infrastructure.http import create_app

# One memory mailbox for the whole run, so later requests meet the state earlier ones left.
app = create_app(threadbox.open("memory://"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(
    # SSE streams: endless (events/stream, GET ag-ui) or open until a run ends (POST ag-ui);
    # tested with real clients in test_http_sse.py, test_ag_ui.py and test_ag_ui_hostile.py.
    path_regex=r"/(events/stream|ag-ui)$"
)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_generated_request_gets_a_declared_answer_and_never_a_5xx(
    case: schemathesis.Case[Any],
) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
