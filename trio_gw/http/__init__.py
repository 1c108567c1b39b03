"""Sans-IO HTTP rules over h11 events: routing, header rewriting, guards, error responses."""

from .errors import RequestRejected as RequestRejected
from .guards import check_request_head as check_request_head
from .headers import TrustedNetworks as TrustedNetworks
from .headers import downstream_response_headers as downstream_response_headers
from .headers import upstream_request_headers as upstream_request_headers
from .responses import error_response as error_response
from .responses import rejection_response as rejection_response
from .routing import RequestFacts as RequestFacts
from .routing import RouteMatch as RouteMatch
from .routing import Router as Router
from .routing import HttpsRedirect as HttpsRedirect
from .routing import https_redirect as https_redirect
from .routing import parse_host_header as parse_host_header
from .routing import select_route as select_route

__all__ = [
    "RequestFacts",
    "RequestRejected",
    "HttpsRedirect",
    "RouteMatch",
    "Router",
    "TrustedNetworks",
    "check_request_head",
    "downstream_response_headers",
    "error_response",
    "https_redirect",
    "parse_host_header",
    "rejection_response",
    "select_route",
    "upstream_request_headers",
]
