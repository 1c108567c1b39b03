"""X.509 helpers over cryptography: parsing in every encoding, identifiers, key checks.

Pure: no trio, sockets, SSL contexts or file IO; time is always a parameter.
"""

from trio_gw.pki.info import CertificateInfo as CertificateInfo
from trio_gw.pki.info import certificate_id as certificate_id
from trio_gw.pki.info import describe_certificate as describe_certificate
from trio_gw.pki.info import fingerprint_sha256 as fingerprint_sha256
from trio_gw.pki.info import format_timestamp as format_timestamp
from trio_gw.pki.info import spki_pin as spki_pin
from trio_gw.pki.keys import key_matches_certificate as key_matches_certificate
from trio_gw.pki.keys import key_size as key_size
from trio_gw.pki.keys import key_type as key_type
from trio_gw.pki.parse import DEFAULT_MAX_INPUT_SIZE as DEFAULT_MAX_INPUT_SIZE
from trio_gw.pki.parse import has_private_key_block as has_private_key_block
from trio_gw.pki.parse import parse_certificates as parse_certificates
from trio_gw.pki.parse import parse_der as parse_der
from trio_gw.pki.parse import parse_pem_chain as parse_pem_chain
from trio_gw.pki.parse import parse_private_key as parse_private_key

__all__ = [
    "DEFAULT_MAX_INPUT_SIZE",
    "CertificateInfo",
    "certificate_id",
    "describe_certificate",
    "fingerprint_sha256",
    "format_timestamp",
    "has_private_key_block",
    "key_matches_certificate",
    "key_size",
    "key_type",
    "parse_certificates",
    "parse_der",
    "parse_pem_chain",
    "parse_private_key",
    "spki_pin",
]
