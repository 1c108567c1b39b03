"""The node's ACME service: Kong's ``/acme`` Admin endpoints, background issuance and renewal, one renewer per cluster.

Theory of operation
-------------------
The global ``acme`` plugin configures it (``snapshot.acme``); without one, or
without a datastore (``database: off`` has nowhere to write certificates),
it does nothing and ``/acme`` answers 404 as Kong's does.

*Rounds.*  :meth:`AcmeService.serve` runs a round at start, then every
:data:`~trio_gw.runtime.acme_renewal.ACME_CHECK_INTERVAL` seconds (an hour;
Kong checks daily), or when woken (at least :data:`ROUND_GAP` apart) -- by ``PATCH /acme`` or by a
handshake for a name the plugin covers and no certificate serves (the SNI
callback notes it in the :class:`~trio_gw.net.acme_challenges.ChallengeStore`;
the handshake itself gets the default certificate and never waits).  A round
takes the cluster-wide lock :data:`LOCK_NAME` of the datastore without
waiting -- a node that does not get it skips the round: **one renewer per
cluster** --, reads the *latest committed* configuration (another node may
have renewed since this node's generation was built), and asks the
:class:`~trio_gw.runtime.acme_renewal.AcmeRenewer` to renew every ACME-managed
certificate whose plan says so and to issue for the noted names.

*Writes.*  An issued certificate is written through :meth:`Gateway.write`
as the Admin API's own ``PUT /certificates/{id}`` with its SNIs, tagged
``acme``: the key is sealed like any other, the write is compiled before it is
committed, every node and worker serves it after its next reload, and the
inventory, expiry gauges and events see it with role ``acme``.  A renewal
replaces the certificate under the same id.

*The account.*  The ACME account (key and URL) is registered once per
directory and email and kept in the datastore as a node secret (sealed with
``private_key_encryption_secret``; :mod:`trio_gw.store.secrets`), so every
node uses the same account.

*Any node answers.*  The CA's validation may reach any node behind the
cluster's load balancer: the issuer shares each challenge answer through the
datastore (a node secret) and waits until every node mirrored it
(:data:`CHALLENGE_POLL`) before asking the CA to validate.

*Failures.*  A failed attempt is remembered per host (reason and the CA's
words) and logged; Kong's ``fail_backoff_minutes`` then holds further
attempts: ``POST /acme`` answers 429 with the last failure until it passes.
The CA's TLS is verified against ``lua_ssl_trusted_certificate``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio

from trio_gw.admin.acme import (
    acme_certificate_request,
    acme_create_refusal,
    acme_created_body,
    acme_managed_hosts,
    list_acme_certificates,
    match_acme_path,
    parse_acme_create,
    show_acme_certificate,
)
from trio_gw.admin.api import AdminRequest, AdminResponse, AdminResult, handle_admin_request, json_response
from trio_gw.admin.errors import AdminError
from trio_gw.errors import ConfigError
from trio_gw.net.acme_challenges import ChallengeStore
from trio_gw.net.acme_results import AcmeAccount, AcmeError
from trio_gw.net.http_fetch import FetchError, request
from trio_gw.runtime.acme_renewal import ACME_CHECK_INTERVAL, AcmeOutcome, AcmeRenewer
from trio_gw.store import Store, StoreError
from trio_gw.tls.acme import HTTP01_NOT_FOUND, AcmeAction, AcmeConfig, AcmeFailure, is_domain_allowed, plan_certificate

if TYPE_CHECKING:
    from trio_gw.runtime.gateway import Gateway

__all__ = ["ACCOUNT_SECRET", "LOCK_NAME", "AcmeService", "AcmeStats"]

log = logging.getLogger("trio_gw.acme")

#: The datastore lock held while a node issues or renews (one renewer per cluster).
LOCK_NAME: Final = "acme"
#: Node secrets holding ACME accounts are named ``acme_account:<digest of directory and email>``.
ACCOUNT_SECRET: Final = "acme_account"
#: How long ``POST /acme`` waits for another node's round to release the lock.
LOCK_WAIT: Final = 120.0
#: Deadline of Kong's ``test_http_challenge_flow`` request.
SANITY_TIMEOUT: Final = 10.0
#: Node secrets holding challenge answers being validated (shared so that any node answers the CA).
CHALLENGE_SECRET: Final = "acme_challenge:"
#: How often every node mirrors the shared challenge answers (while an acme plugin is configured).
CHALLENGE_POLL: Final = 0.5
#: Least time between two rounds: handshakes for a name that keeps failing cannot make the node
#: read its configuration back to back.
ROUND_GAP: Final = 5.0


class DatastoreChallengeShare:
    """Shares challenge answers through the node's datastore (:class:`~trio_gw.net.acme_challenges.ChallengeShare`).

    Blocking: called from the issuer's worker thread.  Without a datastore
    (``database: off``) there is no cluster and nothing to share.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def propagation_delay(self) -> float:
        """Two mirror periods: every node has read the answer before the CA is asked to validate."""
        return 2 * CHALLENGE_POLL if self.gateway.store is not None else 0.0

    def share(self, name: str, key_authorization: str) -> None:
        if self.gateway.store is not None:
            self.gateway.store.write_secret(CHALLENGE_SECRET + name, key_authorization)

    def unshare(self, name: str) -> None:
        if self.gateway.store is not None:
            self.gateway.store.delete_secret(CHALLENGE_SECRET + name)


@dataclass
class AcmeStats:
    """What the service did, for ``/metrics``: counts by ``(result, reason)``."""

    outcomes: dict[tuple[str, str], int]

    def add(self, result: str, reason: str) -> None:
        self.outcomes[(result, reason)] = self.outcomes.get((result, reason), 0) + 1


class AcmeService:
    """See the module docstring.

    Args:
        gateway: the node (its generation, datastore, write path, outbound trust).
        challenges: where the issuer publishes challenge answers (the listeners read it).
        interval: seconds between rounds when nothing wakes the service.
    """

    def __init__(self, gateway: Gateway, challenges: ChallengeStore, *,
                 interval: float = ACME_CHECK_INTERVAL) -> None:
        self.gateway = gateway
        self.challenges = challenges
        self.interval = interval
        #: Last failure per host (Kong's ``fail_backoff_minutes`` counts from it).
        self.failures: dict[str, AcmeFailure] = {}
        self.stats = AcmeStats({})
        #: The port Kong's ``test_http_challenge_flow`` asks on (the CA's: 80).
        self.sanity_port = 80
        #: Rounds run (tests, status).
        self.rounds = 0
        #: Unix time of the renewal plans (a test moves it to a certificate's renewal window; the CA
        #: and the challenge certificates keep real time).
        self.clock: Callable[[], float] = time.time
        self._renewer: tuple[AcmeConfig, AcmeRenewer] | None = None
        self._node_lock = trio.Lock()  # this node's rounds and POST /acme take turns
        self._wake = trio.Event()

    @property
    def config(self) -> AcmeConfig | None:
        """The ``acme`` plugin's configuration in the current generation."""
        return self.gateway.generation.snapshot.acme

    def wake(self) -> None:
        """Run a round now (PATCH /acme, a name wanting a certificate)."""
        self._wake.set()

    # -- background rounds --------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run rounds and mirror shared challenges forever (start it in the node's nursery). Never raises."""
        self.challenges.on_want = self.wake
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._mirror_challenges)
            task_status.started()
            while True:  # a round at start (renewals due while the node was down), then hourly or when woken
                self._wake = trio.Event()  # a wake from now on, even during the round, starts the next one
                try:
                    await self.run_round()
                except Exception:  # a bug must cost one round, never the node
                    log.exception("ACME renewal round failed")
                await trio.sleep(ROUND_GAP)
                with trio.move_on_after(self.interval):
                    await self._wake.wait()

    async def _mirror_challenges(self) -> None:
        """Answer the challenges any node of the cluster is being validated for (see the module docstring)."""
        failing = False
        while True:
            await trio.sleep(CHALLENGE_POLL)
            store = self.gateway.store
            if store is None or self.config is None:
                continue
            revision = self.challenges.revision
            try:
                rows = await trio.to_thread.run_sync(store.read_secrets, CHALLENGE_SECRET)
            except StoreError as exc:
                if not failing:
                    log.warning("shared ACME challenges cannot be read: %s", exc)
                failing = True
                continue
            failing = False
            shared = {name[len(CHALLENGE_SECRET):]: value for name, value in rows.items()}
            try:
                await trio.to_thread.run_sync(lambda: self.challenges.mirror(shared, revision=revision))
            except (ValueError, ssl.SSLError) as exc:  # a shared answer this node cannot build a context for
                log.warning("shared ACME challenges not mirrored: %s", exc)

    async def run_round(self) -> list[AcmeOutcome]:
        """One round (see the module docstring); a datastore failure is logged and the round skipped."""
        wanted = self.challenges.take_wanted()
        config, store = self.config, self.gateway.store
        if config is None or store is None:
            return []
        try:
            async with self._node_lock:
                if not await trio.to_thread.run_sync(store.try_lock, LOCK_NAME):
                    log.debug("another node holds the ACME lock: it renews this round")
                    return []
                try:
                    outcomes = await self._renew(config, store, wanted)
                finally:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(store.unlock, LOCK_NAME)
        except StoreError as exc:
            log.error("ACME renewal round skipped: the datastore failed: %s", exc)
            return []
        finally:
            self.rounds += 1
        return outcomes

    async def _renew(self, config: AcmeConfig, store: Store, wanted: tuple[str, ...]) -> list[AcmeOutcome]:
        entities = await trio.to_thread.run_sync(store.load)  # the latest, with other nodes' renewals
        managed = acme_managed_hosts(entities)
        renewer = await self._renewer_for(config, store)
        outcomes = await renewer.renew_due(managed)
        served = {sni.name for sni in entities.snis.values()}
        for host in wanted:
            if host not in managed and host not in served:
                outcomes.append(await renewer.ensure(host))
        for outcome in outcomes:
            self._count(outcome)
        return outcomes

    # -- the Admin endpoints ------------------------------------------------------------------

    async def handle_admin(self, request: AdminRequest, read_only: str | None) -> AdminResponse | None:
        """Answer ``/acme``, ``/acme/certificates`` and ``/acme/certificates/{host}``; ``None`` for other paths."""
        try:
            endpoint = match_acme_path(request.method, request.path)
            if endpoint is None:
                return None
            config = self.config
            if config is None:
                return json_response(404, {"message": "Not found"})  # Kong: no acme plugin
            now = int(self.clock())
            entities = self.gateway.generation.entities
            if endpoint.action == "list":
                invalid_only = request.query.get("invalid_only", ("false",))[-1].lower() in ("true", "1", "")
                return json_response(200, list_acme_certificates(entities, now=now, invalid_only=invalid_only))
            if endpoint.action == "show":
                return json_response(*show_acme_certificate(entities, endpoint.host or "", now=now))
            if read_only is not None:
                raise AdminError(405, {"message": f"cannot issue certificates when {read_only}"})
            if endpoint.action == "renew":
                self.wake()
                return json_response(202, {"message": "Renewal process started successfully"})
            create = parse_acme_create(request.body, request.headers.get("content-type", "application/json"))
            if create.test_http_challenge_flow:
                return json_response(*await self.sanity_check(config, create.host))
            return json_response(*await self.create(config, create.host))
        except AdminError as exc:
            return json_response(exc.status, exc.body, exc.headers)

    async def create(self, config: AcmeConfig, host: str) -> tuple[int, dict[str, Any]]:
        """``POST /acme``: issue or renew ``host``'s certificate now (Kong: "force renew")."""
        store = self.gateway.store
        assert store is not None, "POST /acme needs a datastore (refused as read-only before)"
        _, not_after = acme_managed_hosts(self.gateway.generation.entities).get(host, (None, None))
        last = self.failures.get(host)
        plan = plan_certificate(config, host, not_after=not_after, last_failure=last, now=int(self.clock()))
        refusal = acme_create_refusal(plan, host)
        if refusal is not None:
            status, body = refusal
            if last is not None and plan.action is AcmeAction.WAIT:
                body["last_failure"] = {"reason": last.reason, "detail": last.detail}
            return status, body
        try:
            async with self._node_lock:
                await self._wait_for_lock(store)
                try:
                    entities = await trio.to_thread.run_sync(store.load)
                    certificate_id, not_after = acme_managed_hosts(entities).get(host, (None, None))
                    renewer = await self._renewer_for(config, store)
                    outcome = await renewer.ensure(host, not_after=not_after, certificate_id=certificate_id,
                                                   explicit=True)
                finally:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(store.unlock, LOCK_NAME)
        except StoreError as exc:
            return 503, {"message": f"the datastore is unavailable: {exc}"}
        self._count(outcome)
        if outcome.failure is not None:
            return 500, {"message": f"failed to update certificate: {outcome.failure.detail}",
                         "reason": outcome.failure.reason}
        return 201, acme_created_body(host)

    async def sanity_check(self, config: AcmeConfig, host: str) -> tuple[int, dict[str, Any]]:
        """Kong's ``test_http_challenge_flow``: does ``http://host/.well-known/acme-challenge/x`` reach this gateway?"""
        problem = f"problem found running sanity check for {host}: "
        if not is_domain_allowed(config, host):
            return 400, {"message": problem + "host is not included in plugin config.domains"}
        port = "" if self.sanity_port == 80 else f":{self.sanity_port}"
        url = f"http://{host}{port}/.well-known/acme-challenge/x"
        try:
            status, body = await request("GET", url, timeout=SANITY_TIMEOUT, max_bytes=4096)
        except FetchError as exc:
            return 400, {"message": problem + f"{url}: {exc}"}
        if body == HTTP01_NOT_FOUND:
            return 200, {"message": f"sanity test for host {host} passed"}
        error = f'unexpected response: "{body[:200].decode("utf-8", "replace")}"'
        if status != 404:
            error += f", unexpected status code: {status}"
        return 400, {"message": problem + error}

    async def _wait_for_lock(self, store: Store) -> None:
        deadline = trio.current_time() + LOCK_WAIT
        while not await trio.to_thread.run_sync(store.try_lock, LOCK_NAME):
            if trio.current_time() >= deadline:
                raise StoreError(f"another node held the ACME lock for {LOCK_WAIT:.0f} s")
            await trio.sleep(0.5)

    # -- the renewer, its account and its writes ----------------------------------------------

    async def _renewer_for(self, config: AcmeConfig, store: Store) -> AcmeRenewer:
        if self._renewer is not None and self._renewer[0] == config:
            return self._renewer[1]
        name = _account_name(config)
        stored = await trio.to_thread.run_sync(store.read_secret, name)
        account = None
        if stored is not None:
            try:
                data = json.loads(stored)
                account = AcmeAccount(str(data["key_pem"]), str(data["uri"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise StoreError(f"the stored ACME account {name} cannot be read ({type(exc).__name__})") from exc

        async def save(new: AcmeAccount) -> None:
            text = json.dumps({"key_pem": new.key_pem, "uri": new.uri})
            await trio.to_thread.run_sync(store.write_secret, name, text)
            log.info("ACME account %s registered at %s for %s", new.uri, config.api_uri, config.account_email)

        # the ACME library (requests, josepy, pyOpenSSL: ~17 MiB) only in a node that issues
        from trio_gw.net.acme_client import AcmeIssuer

        issuer = AcmeIssuer(config, self.challenges, tls_context=self.gateway.fetch_tls)
        renewer = AcmeRenewer(issuer, self._write, account=account, save_account=save, challenge=config.challenge,
                              clock=lambda: self.clock())
        renewer.failures = self.failures  # backoff survives a changed configuration
        self._renewer = (config, renewer)
        return renewer

    async def _write(self, document: dict[str, Any]) -> None:
        """Store an issued certificate through the node's write path (compare-and-swap, sealed, compiled first)."""
        from trio_gw.runtime.gateway import WriteConflict

        certificate_id = str(document.get("id") or uuid.uuid4())
        put = acme_certificate_request(document, certificate_id)
        now = int(time.time())

        def apply(base: Any) -> tuple[AdminResult, Any]:
            result = handle_admin_request(put, base, now=now)
            return result, result.entities

        try:
            result = await self.gateway.write(apply)
        except (ConfigError, WriteConflict, StoreError) as exc:
            raise AcmeError("store_failed", f"the certificate could not be stored: {exc}") from exc
        if result.response.status >= 400:
            message = json.loads(result.response.body or b"{}").get("message", result.response.status)
            raise AcmeError("store_failed", f"the certificate could not be stored: {message}")

    def _count(self, outcome: AcmeOutcome) -> None:
        if outcome.failure is not None:
            self.stats.add("failed", outcome.failure.reason)
        elif outcome.issued is not None:
            renewal = outcome.plan.action in (AcmeAction.RENEW, AcmeAction.NOTHING)  # NOTHING: POST /acme forced it
            self.stats.add("renewed" if renewal else "issued", outcome.plan.reason)


def _account_name(config: AcmeConfig) -> str:
    digest = hashlib.sha256(f"{config.api_uri}\0{config.account_email}".encode()).hexdigest()[:16]
    return f"{ACCOUNT_SECRET}:{digest}"
