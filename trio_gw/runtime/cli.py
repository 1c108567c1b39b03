"""The ``trio-gw`` command line.

    trio-gw run -c trio-gw.yaml [--set key=value ...]   start a node
    trio-gw demo [--set key=value ...]                  zero set-up demo with a dev PKI and an echo upstream
    trio-gw config check FILE                           validate a decK-format declarative file
    trio-gw config dump|load                            export / import the datastore in decK format
    trio-gw keys reseal                                 re-seal private keys under a new secret
    trio-gw settings [--markdown] [-c FILE]             the settings reference, or the effective settings
    trio-gw spec [ARGS ...]                             run the conformance suite (from a source checkout)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import trio

from trio_gw._version import __version__
from trio_gw.errors import ConfigError
from trio_gw.runtime.settings import cli_layer, load_settings
from trio_gw.settings import Settings, settings_reference_markdown


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trio-gw", description="An API gateway on Trio with TLS and mTLS done right.")
    p.add_argument("--version", action="version", version=f"trio-gw {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start a gateway node")
    run.add_argument("-c", "--conf", help="YAML settings file")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")

    demo = sub.add_parser("demo", help="start a demo node: dev PKI, echo upstream, HTTP 8000 and HTTPS 8443")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    demo.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)

    config = sub.add_parser("config", help="declarative configuration tools")
    csub = config.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser("check", help="validate a decK-format file without starting")
    check.add_argument("file")
    dump = csub.add_parser("dump", help="export the datastore in decK format")
    dump.add_argument("-c", "--conf")
    dump.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    dump.add_argument("--include-keys", action="store_true",
                      help="include private keys (written locally only; keep the file safe)")
    dump.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    load = csub.add_parser("load", help="import a decK-format file into the datastore (replaces its content)")
    load.add_argument("file")
    load.add_argument("-c", "--conf")
    load.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    keys = sub.add_parser("keys", help="private keys at rest")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    reseal = ksub.add_parser("reseal", help="re-seal every private key under a new secret")
    reseal.add_argument("-c", "--conf")
    reseal.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    reseal.add_argument("--new-secret-env", default="NEW_PRIVATE_KEY_ENCRYPTION_SECRET",
                        help="environment variable holding the new secret (empty/unset: store keys unsealed)")

    settings = sub.add_parser("settings", help="print the settings reference or the effective settings")
    settings.add_argument("-c", "--conf")
    settings.add_argument("--markdown", action="store_true", help="the reference page (docs/settings.md)")
    settings.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    spec = sub.add_parser("spec", help="run the conformance spec suite (source checkout)", add_help=False)
    spec.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _fail(exc: ConfigError) -> int:
    """Print every problem (one line when there is one) and return the exit status 2."""
    if len(exc.problems) == 1:
        print(f"trio-gw: configuration error: {exc.problems[0]}", file=sys.stderr)
        return 2
    print("trio-gw: configuration error:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return 2


def cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.conf, overrides=cli_layer(args.set))
        return run_node(settings)
    except ConfigError as exc:
        return _fail(exc)
    except KeyboardInterrupt:
        return 130


def run_node(settings: Settings) -> int:
    """Run a node: one process (``workers: 1``), or a supervisor and its workers.

    Raises:
        ConfigError: the node cannot start.
    """
    from trio_gw.model.workers import resolve_worker_count

    workers = resolve_worker_count(settings.workers, len(os.sched_getaffinity(0)))
    if workers == 1:
        from trio_gw.runtime.gateway import run_gateway

        trio.run(run_gateway, settings)
        return 0
    from trio_gw.runtime.supervisor import prepare_metrics_directory

    # prometheus-client picks its multiprocess mode when first imported: set it up before anything imports it
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prepare_metrics_directory(settings.prefix)
    from trio_gw.runtime.logs import configure_logging
    from trio_gw.runtime.supervisor import run_supervisor

    configure_logging(settings.log_level, process="supervisor")
    trio.run(run_supervisor, settings, workers, os.environ["PROMETHEUS_MULTIPROC_DIR"])
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    import trio_gw.plugins  # noqa: F401  (registers every plugin's config schema)
    from trio_gw.model.declarative import load_declarative_text

    try:
        text = Path(args.file).read_text()
    except OSError as exc:
        print(f"trio-gw: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    from trio_gw.plugins.base import check_plugins_available

    try:
        entities = load_declarative_text(text, now=int(time.time()))
        check_plugins_available(entities)
    except ConfigError as exc:
        return _fail(exc.prefixed(args.file))
    counts = {k: len(getattr(entities, k)) for k in ("services", "routes", "certificates", "ca_certificates",
                                                       "snis", "consumers", "plugins")}
    print(f"{args.file}: OK (" + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + ")")
    return 0


def _store_from(args: argparse.Namespace) -> tuple[object, object]:
    from trio_gw.runtime.datastore import open_store

    settings = load_settings(args.conf, overrides=cli_layer(args.set))
    store = open_store(settings)
    if store is None:
        raise ConfigError("this command needs a datastore (database: sqlite or postgres)", path="database")
    return settings, store


def cmd_config_dump(args: argparse.Namespace) -> int:
    import yaml

    from trio_gw.model.declarative import dump_declarative

    try:
        _, store = _store_from(args)
    except ConfigError as exc:
        return _fail(exc)
    doc = dump_declarative(store.load(), include_keys=args.include_keys)  # type: ignore[attr-defined]
    text = yaml.safe_dump(doc, sort_keys=False)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return 0


def cmd_config_load(args: argparse.Namespace) -> int:
    import trio_gw.plugins  # noqa: F401  (registers every plugin's config schema)
    from trio_gw.model.declarative import load_declarative_text
    from trio_gw.plugins.base import check_plugins_available
    from trio_gw.store import replace_all

    try:
        entities = load_declarative_text(Path(args.file).read_text(), now=int(time.time()))
        settings, store = _store_from(args)
        check_plugins_available(entities, settings.plugins)  # type: ignore[attr-defined]  # as `run` would
    except OSError as exc:
        print(f"trio-gw: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        return _fail(exc)
    version = replace_all(store, entities)  # type: ignore[arg-type]
    print(f"{args.file}: loaded into the datastore (version {version})")
    return 0


def cmd_keys_reseal(args: argparse.Namespace) -> int:
    try:
        settings, store = _store_from(args)
    except ConfigError as exc:
        return _fail(exc)
    new_secret = os.environ.get(args.new_secret_env) or None
    version = store.reseal(settings.private_key_encryption_secret, new_secret)  # type: ignore[attr-defined]
    state = "sealed under the new secret" if new_secret else "stored unsealed"
    print(f"private keys {state} (datastore version {version}); restart every node with the new secret")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        sys.stdout.write(settings_reference_markdown())
        return 0
    try:
        settings = load_settings(args.conf, overrides=cli_layer(args.set))
    except ConfigError as exc:
        return _fail(exc)
    from trio_gw.settings import SECRET_SETTINGS

    out = {k: ("<redacted>" if k in SECRET_SETTINGS and v else list(v) if isinstance(v, tuple) else v)
           for k, v in settings.as_mapping().items()}
    print(json.dumps({k: (str(v) if not isinstance(v, (str, int, float, bool, list, type(None))) else v)
                      for k, v in out.items()}, indent=2, default=str))
    return 0


def cmd_spec(spec_args: list[str]) -> int:
    root = Path.cwd()
    if not (root / "spec" / "__main__.py").exists():
        print("trio-gw spec: run it from a source checkout (no spec/ directory here)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "spec", *spec_args], cwd=root)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["spec"]:
        # Everything after `spec` belongs to the suite's own parser (argparse's
        # REMAINDER refuses a first argument that looks like an option).
        return cmd_spec(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "demo":
        from trio_gw.runtime.demo import run_demo

        try:
            return run_demo(cli_layer(args.set), exit_after=args.exit_after)
        except ConfigError as exc:
            return _fail(exc)
    if args.command == "config":
        return {"check": cmd_config_check, "dump": cmd_config_dump, "load": cmd_config_load}[
            args.config_command](args)
    if args.command == "keys":
        return cmd_keys_reseal(args)
    if args.command == "settings":
        return cmd_settings(args)
    raise RuntimeError(f"Unexpected command: {args.command!r}")


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
