"""The Admin API: Kong-compatible request handling as a pure function, and its OpenAPI document."""

from trio_gw.admin.api import DATABASE_OFF as DATABASE_OFF
from trio_gw.admin.api import AdminRequest as AdminRequest
from trio_gw.admin.api import AdminResponse as AdminResponse
from trio_gw.admin.api import AdminResult as AdminResult
from trio_gw.admin.api import handle_admin_request as handle_admin_request
from trio_gw.admin.openapi import openapi_document as openapi_document

__all__ = ["DATABASE_OFF", "AdminRequest", "AdminResponse", "AdminResult", "handle_admin_request", "openapi_document"]
