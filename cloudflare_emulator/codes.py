"""Error codes the emulator answers with.

Where Cloudflare's code is known it is used and FACTS.md is cited; the rest are chosen here (>= 1000, as
the schema's `Message.code` requires) and grouped so a log line tells which area failed.
"""

from __future__ import annotations

from cloudflare.errors import RULE_LIMIT_CODE

# Known Cloudflare codes (FACTS.md §11).
NO_ROUTE = 7003  # "No route for the URI" / "Could not route to ..."
CLIENT_CERTIFICATE_QUOTA = 1445  # §3: per-zone managed-CA quota reached
MTLS_CA_QUOTA = 1489  # §3: "Hit maximum CA cert allocation."
LEGACY_FIREWALL_MAINTENANCE = 10020  # §8: Firewall Rules / Filters writes
RATE_LIMITED = 10100  # §9: 1200 requests per 300 seconds
MISSING_AUTH = 9106  # "Missing X-Auth-Key, X-Auth-Email or Authorization headers"
INVALID_TOKEN = 9109  # "Invalid access token"

# Generic request problems (codes Cloudflare uses for the same situations on other endpoints).
METHOD_NOT_ALLOWED = 7001
MALFORMED_JSON = 6007
INTERNAL_ERROR = 10002  # chosen: an unexpected emulator error or an injected 5xx

# Client certificates (chosen).
CLIENT_CERTIFICATE_BAD_REQUEST = 1400  # missing or mistyped field, bad list query
CLIENT_CERTIFICATE_INVALID_CSR = 1401
CLIENT_CERTIFICATE_INVALID_VALIDITY = 1402
CLIENT_CERTIFICATE_NOT_FOUND = 1404
CLIENT_CERTIFICATE_INVALID_TRANSITION = 1405

# Account mTLS certificates and hostname associations (chosen).
MTLS_BAD_REQUEST = 1480
MTLS_INVALID_CERTIFICATE = 1481
MTLS_NOT_FOUND = 1482
MTLS_IN_USE = 1483
HOSTNAME_ASSOCIATION_BAD_REQUEST = 1490

# Rulesets (chosen; the shape is `rulesets_Failure`, with `source.pointer` where a field is at fault).
RULESET_BAD_REQUEST = 10001
RULESET_NOT_FOUND = 10003
RULESET_ENTRYPOINT_EXISTS = 10004
RULESET_INVALID_EXPRESSION = 10005
RULESET_DUPLICATE_REF = 10006
RULE_NOT_FOUND = 10007
# ASSUMPTION: Cloudflare does not document the code for "too many rules in the phase" (FACTS.md §14 says
# only that the write is refused). 20217 is the code seen for the neighbouring ruleset quota ("exceeded
# maximum number of zone rulesets for phase ...", userbradley/documentation.breadnet.co.uk#609). The client
# maps it to RuleLimitError (cloudflare/errors.py holds the one definition).
CUSTOM_RULES_LIMIT = RULE_LIMIT_CODE

# Emulator-only routes under /__emulator__ (chosen; not Cloudflare's API).
EMULATOR_BAD_REQUEST = 1700
EMULATOR_CANNOT_EVALUATE = 1701  # a rule uses a field, operator or action the evaluator does not read
