"""Command line: parse flags, build the settings, call a function tests can call directly."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from modelport import __version__
from modelport.errors import ModelportError
from modelport.settings import Settings, build_settings


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve one MLflow model over V2, V1 and MLflow scoring")
    p.add_argument("model_uri", nargs="?", help="model folder or URI (s3://, gs://, models:/, ...)")
    # KServe passes these spellings to custom serving runtimes.
    p.add_argument("--model-dir", "--model_dir", dest="model_dir", help="same as MODEL_URI")
    p.add_argument("--name", "--model-name", "--model_name", dest="model_name")
    p.add_argument("--host", dest="host")
    p.add_argument("--http-port", "--http_port", dest="http_port", type=int)
    p.add_argument("--grpc-port", "--grpc_port", dest="grpc_port", type=int)
    p.add_argument("--workers", type=int, help="model worker processes (default 1)")
    p.add_argument("--max-body-bytes", dest="max_body_bytes", type=int)
    p.add_argument("--batching", choices=["auto", "on", "off"])
    p.add_argument("--max-batch-size", dest="max_batch_size", type=int)
    p.add_argument("--max-batch-wait-ms", dest="max_batch_wait_ms", type=float)
    p.add_argument("--python", help="interpreter for the workers (default: chosen by --env)")
    p.add_argument("--env", help="auto | local | uv | tarball[:URI] | path:DIR")
    p.add_argument("--strict-env", dest="strict_env", action="store_true", default=None)
    p.add_argument("--allow-python-mismatch", dest="allow_python_mismatch", action="store_true", default=None)
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--load-timeout", dest="load_timeout", type=float)
    p.add_argument("--log-level", dest="log_level")
    p.add_argument("--log-format", dest="log_format", choices=["text", "json"])
    p.add_argument("--access-log", dest="access_log", action="store_true", default=None)
    p.add_argument("--request-timeout", dest="request_timeout", type=float, help="seconds; 0 = none")
    p.add_argument("--worker-ping-timeout", dest="worker_ping_timeout", type=float)
    p.add_argument("--graceful-timeout", dest="graceful_timeout", type=float)
    p.add_argument("--max-connections", dest="max_connections", type=int)
    p.add_argument("--max-header-bytes", dest="max_header_bytes", type=int)
    p.add_argument("--header-timeout", dest="header_timeout", type=float)
    p.add_argument("--keep-alive-timeout", dest="keep_alive_timeout", type=float)


def _storage_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="copy the model at URI to DEST")
    p.add_argument("uri")
    p.add_argument("dest")
    p.add_argument("--cache-dir", dest="cache_dir")
    p = sub.add_parser(
        "storage-initializer", help="KServe storage-initializer contract: SRC DEST [SRC DEST ...]"
    )
    p.add_argument("pairs", nargs="+")


def _env_parsers(sub: argparse._SubParsersAction) -> None:
    env = sub.add_parser("env", help="inspect or build a model's Python environment")
    env_sub = env.add_subparsers(dest="env_command", required=True)
    p = env_sub.add_parser("diff", help="compare a model's requirements with an interpreter")
    p.add_argument("uri")
    p.add_argument("--python")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cache-dir", dest="cache_dir")
    p = env_sub.add_parser("build", help="build (and optionally pack) a model's environment ahead of time")
    p.add_argument("uri")
    p.add_argument("--pack", help="write a relocatable tarball here")
    p.add_argument("--python")
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--allow-python-mismatch", dest="allow_python_mismatch", action="store_true", default=None)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelport", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modelport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _storage_parsers(sub)
    _env_parsers(sub)
    return parser


def run(argv: Sequence[str], environ: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    args = make_parser().parse_args(list(argv))
    flags = vars(args)
    if args.command == "serve":
        flags["model_uri"] = flags.get("model_uri") or flags.get("model_dir")
    try:
        settings = build_settings(flags, environ)
        return _dispatch(args, settings)
    except ModelportError as exc:
        print(f"modelport: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        from modelport.server import serve

        if not settings.serve.model_uri:
            raise ModelportError("no model given: pass MODEL_URI or --model_dir")
        return serve(settings)
    if args.command == "fetch":
        from modelport.storage.commands import fetch_command

        return fetch_command(args.uri, args.dest, settings)
    if args.command == "storage-initializer":
        from modelport.storage.commands import storage_initializer_command

        return storage_initializer_command(args.pairs, settings)
    if args.command == "env":
        from modelport.envs.commands import build_command, diff_command

        if args.env_command == "diff":
            return diff_command(args.uri, settings, python=args.python, as_json=args.json)
        return build_command(args.uri, settings, pack=args.pack, python=args.python)
    raise AssertionError(args.command)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
