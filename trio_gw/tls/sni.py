"""SNI → server certificate selection, as a precomputed index.

Theory of operation
-------------------
The listener's SNI callback is synchronous and runs on every full handshake, so
selection is split in two:

* :meth:`SniIndex.build` runs once per snapshot (off the request path).  It
  validates and canonicalises every configured name, rejects duplicates, and
  resolves every tie in advance, so each lookup key maps to exactly one
  precomputed :class:`SniSelection`.
* :func:`select_certificate` canonicalises the client's name once (see
  :mod:`trio_gw.tls.hostname`) and then does at most five dict lookups — the
  work does not depend on how many certificates are configured.  It never
  raises: any ``str`` or ``None`` gives a selection or ``None``.

Rules, first match wins (the merged Kong + Tyk order)::

    1  exact           SNI entity equal to the name            api.example.com
    2  wildcard_left   SNI entity "*." + name minus 1st label  *.example.com
    3  wildcard_right  SNI entity name minus last label + ".*" example.*
    4  san             dNSName of a certificate WITHOUT SNI entities (Tyk):
                       4a exact SAN, custom-domain certificates before global
                       4b wildcard SAN, custom-domain before global
    5  catch_all       the SNI entity "*"
    6  default         the first ``ssl_cert`` pair (settings)
    7  first_configured  the first certificate by ``order`` (Tyk's default),
                       global certificates before custom-domain ones

Choices, and why:

* 1–3 and 6 are Kong's ``find_certificate`` order (wildcards cover exactly one
  label, as Kong's ``produce_wild_snis`` does: ``*.test`` and ``a.*.b`` never
  match, so they are rejected at load time instead of lying dead).
* The SAN rule (4) sits *before* Kong's ``*`` (5), not after it.  In Kong the
  ``*`` entity is the way to configure a default certificate, and Kong has no
  SAN rule, so a Kong-only configuration selects exactly as Kong does; a
  Tyk-only configuration (no SNI entities) selects as Tyk does.  In a mixed
  configuration a certificate that really covers the name beats a catch-all
  that does not know it — otherwise one ``*`` entity would make every
  SAN-selected certificate unreachable.
* Within 4, exact beats wildcard before scope is considered (as Go's
  ``NameToCertificate``, which Tyk used, looks up the exact name first); then
  certificates bound to an API custom domain beat global ones (Tyk); then the
  lowest ``(order, certificate_id)`` wins.  Such ties are legitimate (RSA and
  ECDSA twins, rotation) but worth a look, so they are listed in
  :attr:`SniIndex.warnings`.  SANs of certificates that do have SNI entities
  are ignored: explicit entities define where those certificates are served.
* No SNI (``None``), an IP literal (RFC 6066 forbids it in SNI) or a name that
  is not a valid host name is "no name": rules 5–7 apply.  Kong skips ``*``
  for SNI-less clients only because it looks ``*`` up by name; here ``*`` is
  the configured default and is served to them too.
* ``strict`` (setting ``ssl_sni_strict``): no name → no certificate, and a
  valid name that matches none of 1–5 → no certificate; the caller answers
  with the ``unrecognized_name`` alert.  An explicit ``*`` entity still counts
  as a match for every valid name: it is the operator's own statement.
* ``order`` and ``certificate_id`` only break ties, so permuting the candidate
  sequence never changes a selection.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from trio_gw.errors import ConfigError, Problem
from trio_gw.tls.hostname import (
    InvalidServerName,
    is_ip_literal,
    normalize_server_name,
    parse_configured_name,
    wildcard_base,
)

CATCH_ALL = "*"


class SniRule(enum.Enum):
    """Which rule selected the certificate (for logs, metrics and tests)."""

    EXACT = "exact"
    WILDCARD_LEFT = "wildcard_left"
    WILDCARD_RIGHT = "wildcard_right"
    SAN = "san"
    CATCH_ALL = "catch_all"
    DEFAULT = "default"
    FIRST_CONFIGURED = "first_configured"


class SniScope(enum.Enum):
    """Where a certificate is bound: globally, or to an API's custom domain (Tyk)."""

    GLOBAL = "global"
    CUSTOM_DOMAIN = "custom_domain"


@dataclass(frozen=True)
class SniCandidate:
    """One certificate the listener may serve.

    Attributes:
        certificate_id: the certificate's id (what the snapshot builds a context for).
        names: its SNI entities: exact, ``*.x.y``, ``x.*`` or ``*``.
        san_names: its dNSNames (the CN when it has none); used only when
            ``names`` is empty.  Entries that are not valid names are skipped
            and reported in :attr:`SniIndex.warnings`.
        scope: custom-domain certificates win SAN ties over global ones.
        order: configuration order (e.g. ``created_at``), lowest first; only
            breaks ties and picks the first-configured default.
    """

    certificate_id: str
    names: tuple[str, ...] = ()
    san_names: tuple[str, ...] = ()
    scope: SniScope = SniScope.GLOBAL
    order: int = 0


@dataclass(frozen=True)
class SniSelection:
    """The chosen certificate, the rule that chose it and the configured name that matched.

    ``matched`` is the canonical SNI entity or SAN (``*.example.com``,
    ``example.*``, ``*``); ``None`` for the ``default`` and ``first_configured`` rules.
    """

    certificate_id: str
    rule: SniRule
    matched: str | None = None


@dataclass(frozen=True)
class SniIndex:
    """Precomputed lookup tables; build with :meth:`build`, query with :func:`select_certificate`.

    Attributes:
        exact: canonical name → selection (rule ``exact``).
        wildcard_left: name minus its first label → selection.
        wildcard_right: name minus its last label → selection.
        san_exact: canonical dNSName → selection (rule ``san``).
        san_wildcard: wildcard dNSName minus ``*.`` → selection.
        unmatched: answer for a valid name no rule 1–4 matched.
        unnamed: answer for no SNI, an IP literal or an invalid name.
        strict: whether built with ``ssl_sni_strict``.
        warnings: human-readable notes for ``config check`` (ties, skipped SANs).
    """

    exact: Mapping[str, SniSelection] = field(default_factory=dict)
    wildcard_left: Mapping[str, SniSelection] = field(default_factory=dict)
    wildcard_right: Mapping[str, SniSelection] = field(default_factory=dict)
    san_exact: Mapping[str, SniSelection] = field(default_factory=dict)
    san_wildcard: Mapping[str, SniSelection] = field(default_factory=dict)
    unmatched: SniSelection | None = None
    unnamed: SniSelection | None = None
    strict: bool = False
    warnings: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        candidates: Iterable[SniCandidate],
        default_certificate_ids: Sequence[str] = (),
        *,
        strict: bool = False,
    ) -> SniIndex:
        """Validate the candidates and precompute every lookup.

        Args:
            candidates: the certificates that may be served, in any order.
            default_certificate_ids: the ``ssl_cert`` pairs in settings order;
                the first is served by the ``default`` rule.
            strict: ``ssl_sni_strict``: serve nothing for unknown or missing names.

        Returns:
            The index.

        Raises:
            ConfigError: every problem found at once: an empty or repeated
                certificate id, an invalid SNI name (partial or misplaced
                wildcard, IP address, port, bad characters), an SNI name bound
                twice (naming both certificates), a repeated default id.
        """
        builder = _Builder()
        for position, candidate in sorted(enumerate(candidates), key=lambda pc: _tie_key(pc[1])):
            builder.add(position, candidate)
        builder.check_defaults(default_certificate_ids)
        if builder.problems:
            raise ConfigError(builder.problems)
        fallback = builder.fallback(default_certificate_ids)
        catch_all = builder.catch_all
        return cls(
            exact=builder.tables[SniRule.EXACT],
            wildcard_left=builder.tables[SniRule.WILDCARD_LEFT],
            wildcard_right=builder.tables[SniRule.WILDCARD_RIGHT],
            san_exact=builder.san_exact,
            san_wildcard=builder.san_wildcard,
            unmatched=catch_all or (None if strict else fallback),
            unnamed=None if strict else (catch_all or fallback),
            strict=strict,
            warnings=tuple(builder.warnings),
        )


def select_certificate(index: SniIndex, server_name: str | None) -> SniSelection | None:
    """Choose the certificate for a handshake.

    Args:
        index: the snapshot's SNI index.
        server_name: the SNI the client sent (any text), or ``None`` without SNI.

    Returns:
        The selection, or ``None`` when nothing may be served (strict mode, or
        no certificate configured at all): the caller then fails the handshake
        with ``unrecognized_name``.  Never raises.
    """
    if server_name is None:
        return index.unnamed
    try:
        name = normalize_server_name(server_name)
    except InvalidServerName:
        return index.unnamed
    if is_ip_literal(name):
        return index.unnamed
    found = index.exact.get(name)
    if found is not None:
        return found
    _, dot, parent = name.partition(".")
    if dot:
        found = index.wildcard_left.get(parent) or index.wildcard_right.get(name.rpartition(".")[0])
    else:
        found = None
    if found is not None:
        return found
    found = index.san_exact.get(name)
    if found is None and dot:
        found = index.san_wildcard.get(parent)
    return found if found is not None else index.unmatched


def _tie_key(candidate: SniCandidate) -> tuple[int, int, str]:
    """Sort key: custom-domain first, then configuration order, then id."""
    return (
        candidate.scope is not SniScope.CUSTOM_DOMAIN,
        candidate.order,
        candidate.certificate_id,
    )


class _Builder:
    """Tables and problems for :meth:`SniIndex.build`; candidates arrive in tie order."""

    def __init__(self) -> None:
        self.tables: dict[SniRule, dict[str, SniSelection]] = {
            SniRule.EXACT: {},
            SniRule.WILDCARD_LEFT: {},
            SniRule.WILDCARD_RIGHT: {},
        }
        self.catch_all: SniSelection | None = None
        self.san_exact: dict[str, SniSelection] = {}
        self.san_wildcard: dict[str, SniSelection] = {}
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.candidates: dict[str, SniCandidate] = {}
        self._owners: dict[str, str] = {}  # canonical SNI entity → certificate id

    def add(self, position: int, candidate: SniCandidate) -> None:
        cid = candidate.certificate_id
        if not cid:
            self.problems.append(Problem(f"certificates[{position}]", "empty certificate id"))
            return
        if cid in self.candidates:
            message = f"certificate {cid!r} listed twice"
            self.problems.append(Problem(f"certificates[{cid}]", message))
            return
        self.candidates[cid] = candidate
        for j, raw in enumerate(candidate.names):
            self._add_entity(cid, raw, f"certificates[{cid}].snis[{j}]")
        if not candidate.names:
            for raw in candidate.san_names:
                self._add_san(candidate, raw)

    def _add_entity(self, cid: str, raw: str, path: str) -> None:
        try:
            rule, key, canonical = _parse_sni_entity(raw, path)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return
        owner = self._owners.setdefault(canonical, cid)
        if owner != cid:
            message = f"SNI {canonical!r} is bound to both certificate {owner!r} and {cid!r}"
            self.problems.append(Problem(path, message))
        elif rule is SniRule.CATCH_ALL:
            if self.catch_all is not None:
                self.problems.append(Problem(path, f"SNI '*' listed twice on certificate {cid!r}"))
            self.catch_all = SniSelection(cid, rule, canonical)
        elif key in self.tables[rule]:
            message = f"SNI {canonical!r} listed twice on certificate {cid!r}"
            self.problems.append(Problem(path, message))
        else:
            self.tables[rule][key] = SniSelection(cid, rule, canonical)

    def _add_san(self, candidate: SniCandidate, raw: str) -> None:
        cid = candidate.certificate_id
        if raw.startswith("*"):
            base = wildcard_base(raw)
            if base is None:
                self.warnings.append(
                    f"certificate {cid!r}: SAN {raw[:80]!r} ignored (not a wildcard of one"
                    " whole leftmost label over at least two labels)"
                )
                return
            table, key, canonical = self.san_wildcard, base, "*." + base
        else:
            try:
                key = canonical = normalize_server_name(raw)
            except InvalidServerName as exc:
                self.warnings.append(
                    f"certificate {cid!r}: SAN {raw[:80]!r} ignored ({exc.reason})"
                )
                return
            if is_ip_literal(key):
                self.warnings.append(f"certificate {cid!r}: SAN {raw!r} ignored (IP address)")
                return
            table = self.san_exact
        held = table.get(key)
        if held is None:
            table[key] = SniSelection(cid, SniRule.SAN, canonical)
        elif (
            held.certificate_id != cid
            and self.candidates[held.certificate_id].scope is candidate.scope
        ):
            self.warnings.append(
                f"SAN {canonical!r} is on certificates {held.certificate_id!r} and {cid!r};"
                f" {held.certificate_id!r} is served"
            )

    def check_defaults(self, default_ids: Sequence[str]) -> None:
        seen: set[str] = set()
        for i, cid in enumerate(default_ids):
            if not cid or cid in seen:
                message = f"empty or repeated certificate id {cid!r}"
                self.problems.append(Problem(f"ssl_cert[{i}]", message))
            seen.add(cid)

    def fallback(self, default_ids: Sequence[str]) -> SniSelection | None:
        if default_ids:
            return SniSelection(default_ids[0], SniRule.DEFAULT)
        first = min(
            self.candidates.values(),
            key=lambda c: (c.scope is not SniScope.GLOBAL, c.order, c.certificate_id),
            default=None,
        )
        if first is None:
            return None
        return SniSelection(first.certificate_id, SniRule.FIRST_CONFIGURED)


def _parse_sni_entity(raw: str, path: str) -> tuple[SniRule, str, str]:
    """Classify a configured SNI name: (rule, lookup key, canonical spelling).

    Raises:
        ConfigError: the name is invalid (with ``path``).
    """
    if raw == CATCH_ALL:
        return SniRule.CATCH_ALL, CATCH_ALL, CATCH_ALL
    if raw.count("*") > 1:
        raise ConfigError(f"{raw!r}: only one wildcard is allowed", path)
    if raw.startswith("*."):
        base = wildcard_base(raw)
        if base is None:
            parse_configured_name(raw[2:], path)  # raises with the precise reason
            message = f"{raw!r}: a leftmost wildcard needs at least two labels after '*.'"
            raise ConfigError(message, path)
        return SniRule.WILDCARD_LEFT, base, "*." + base
    if raw.endswith(".*"):
        head = parse_configured_name(raw[:-2], path)
        return SniRule.WILDCARD_RIGHT, head, head + ".*"
    if "*" in raw:
        raise ConfigError(
            f"{raw!r}: a wildcard must be a whole leftmost or rightmost label", path
        )
    name = parse_configured_name(raw, path)
    return SniRule.EXACT, name, name
