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
    p = sub.add_parser("serve", help="serve MLflow models over V2, V1 and MLflow scoring")
    p.add_argument(
        "model_uris",
        nargs="*",
        metavar="MODEL_URI",
        help="model folder or URI (s3://, gs://, models:/, ...), or NAME=URI; several serve several models",
    )
    p.add_argument(
        "--model-repository",
        dest="model_repository",
        help="a folder of model folders (each holding an MLmodel), as KServe's /mnt/models",
    )
    p.add_argument(
        "--load-models-at-startup",
        dest="load_models_at_startup",
        choices=["true", "false"],
        help="load every model before reporting ready (default true); false: load through the repository API",
    )
    p.add_argument(
        "--max-loaded-models",
        dest="max_loaded_models",
        type=int,
        help="models loaded at once; the least recently used is unloaded past it, reloaded on demand (0 = no limit)",
    )
    # KServe passes these spellings to custom serving runtimes.
    p.add_argument("--model-dir", "--model_dir", dest="model_dir", help="same as MODEL_URI")
    p.add_argument("--name", "--model-name", "--model_name", dest="model_name")
    p.add_argument("--host", dest="host")
    p.add_argument("--http-port", "--http_port", dest="http_port", type=int)
    p.add_argument(
        "--grpc-port",
        "--grpc_port",
        dest="grpc_port",
        type=int,
        help="Open Inference Protocol over gRPC (default 8081; 0 = no gRPC)",
    )
    p.add_argument("--workers", type=int, help="model worker processes (default 1)")
    p.add_argument(
        "--worker-start",
        dest="worker_start",
        choices=["fork", "spawn"],
        help="fork workers from a warm template (default; spawned where unsafe) or spawn each",
    )
    p.add_argument("--max-body-bytes", dest="max_body_bytes", type=int)
    p.add_argument("--batching", choices=["auto", "on", "off"])
    p.add_argument("--max-batch-size", dest="max_batch_size", type=int)
    p.add_argument("--max-batch-wait-ms", dest="max_batch_wait_ms", type=float)
    p.add_argument("--python", help="interpreter for the workers (default: chosen by --env)")
    p.add_argument("--env", help="auto | local | uv | conda | tarball[:URI] | path:DIR")
    p.add_argument("--strict-env", dest="strict_env", action="store_true", default=None)
    p.add_argument("--allow-python-mismatch", dest="allow_python_mismatch", action="store_true", default=None)
    p.add_argument("--cache-dir", dest="cache_dir")
    _env_build_flags(p)
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


def _env_build_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--offline", action="store_true", default=None, help="build only from --find-links and uv's cache"
    )
    p.add_argument("--find-links", dest="find_links", help="wheelhouse folder(s) or URL(s), comma-separated")
    p.add_argument(
        "--python-downloads",
        dest="python_downloads",
        choices=["never", "automatic", "manual"],
        help="may uv download a missing Python (default automatic; never in the image)",
    )
    p.add_argument("--cache-max-bytes", dest="cache_max_bytes", help="cache budget, e.g. 20G (LRU eviction)")
    p.add_argument(
        "--resolve-as-of",
        dest="resolve_as_of",
        choices=["created", "now"],
        help="resolve what the model leaves unpinned as of its creation time (default) or today",
    )


def _cache_parsers(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser("cache", help="list or prune the model and environment cache")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    p = cache_sub.add_parser("list", help="entries, least recently used first")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cache-dir", dest="cache_dir")
    p = cache_sub.add_parser("prune", help="evict unused entries down to a budget (default: all unused)")
    p.add_argument("--max-bytes", dest="max_bytes", help="keep at most this much, e.g. 20G")
    p.add_argument("--cache-dir", dest="cache_dir")


def _package_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("package", help="package a model as an image: --modelcar for KServe's oci:// storage")
    p.add_argument("uri", help="model folder or URI")
    p.add_argument("--modelcar", required=True, metavar="IMAGE", help="tag of the modelcar image to build")
    p.add_argument("--base", help="base image with sh, ln and sleep (default: a pinned busybox)")
    p.add_argument("--builder", choices=["podman", "buildah", "docker"], help="default: the first found")
    p.add_argument("--cache-dir", dest="cache_dir")


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
    p.add_argument("--env", help="uv (default) | conda")
    _env_build_flags(p)


def _doctor_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check before deploying whether a model will serve, where, and why not")
    p.add_argument("model_uri", help="model folder or URI, as `serve` takes it")
    p.add_argument("--target-python", dest="target_python", help="the interpreter it will be served with")
    p.add_argument("--target-mlflow", dest="target_mlflow", help="would a server with this mlflow read it")
    p.add_argument(
        "--kserve",
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="InferenceService YAML, and optionally (Cluster)ServingRuntime, ClusterStorageContainer, TrainedModel, CRD files",
    )
    p.add_argument("--no-smoke", dest="no_smoke", action="store_true", help="do not serve the model")
    p.add_argument("--build", action="store_true", help="build the isolated environment, not only resolve it")
    p.add_argument("--smoke-timeout", dest="smoke_timeout", type=float, default=900.0, help="seconds")
    p.add_argument("--json", action="store_true")
    p.add_argument("--cache-dir", dest="cache_dir")
    _env_build_flags(p)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelport", description=__doc__)
    parser.add_argument("--version", action="version", version=f"modelport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _storage_parsers(sub)
    _env_parsers(sub)
    _package_parser(sub)
    _doctor_parser(sub)
    _cache_parsers(sub)
    return parser


def run(argv: Sequence[str], environ: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    parser = make_parser()
    args, extra = parser.parse_known_args(list(argv))
    if extra:
        if args.command != "serve" or any(e.startswith("-") for e in extra):
            parser.parse_args(list(argv))  # exits with argparse's own message
        args.model_uris = [*(args.model_uris or []), *extra]  # MODEL_URIs after flags
    flags = vars(args)
    if args.command == "serve":
        uris = list(flags.get("model_uris") or [])
        if not uris and flags.get("model_dir"):
            uris = [flags["model_dir"]]
        flags["model_uris"] = uris
        flags["model_uri"] = uris[0] if len(uris) == 1 else None
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
        from modelport.boot import serve

        serve_opts = settings.serve
        if not (serve_opts.model_uri or serve_opts.model_uris or serve_opts.model_repository):
            raise ModelportError(
                "no model given: pass MODEL_URI or --model_dir, --model-repository DIR, or set "
                "MODELPORT_MODEL_URI (or MLSERVER_MODEL_URI)"
            )
        return serve(settings)
    if args.command == "fetch":
        from modelport.storage.commands import fetch_command

        return fetch_command(args.uri, args.dest, settings)
    if args.command == "storage-initializer":
        from modelport.storage.commands import storage_initializer_command

        return storage_initializer_command(args.pairs, settings)
    if args.command == "package":
        from modelport.package import package_command

        return package_command(args.uri, settings, args.modelcar, args.base, args.builder)
    if args.command == "env":
        from modelport.envs.commands import build_command, diff_command

        if args.env_command == "diff":
            return diff_command(args.uri, settings, python=args.python, as_json=args.json)
        return build_command(args.uri, settings, pack=args.pack, python=args.python)
    if args.command == "doctor":
        from modelport.doctor.commands import doctor_command
        from modelport.doctor.context import Options

        options = Options(
            args.model_uri,
            target_python=args.target_python,
            target_mlflow=args.target_mlflow,
            kserve_files=tuple(args.kserve),
            smoke=not args.no_smoke,
            build=args.build,
            smoke_timeout=args.smoke_timeout,
        )
        return doctor_command(options, settings, os.environ, as_json=args.json)
    if args.command == "cache":
        from modelport.cache_commands import list_command, prune_command

        if args.cache_command == "list":
            return list_command(settings, as_json=args.json)
        return prune_command(settings, args.max_bytes)
    raise AssertionError(args.command)


def main() -> None:
    sys.exit(run(sys.argv[1:]))
