"""The gRPC front: a ``grpc.aio`` server in the HTTP server's event loop, serving
``inference.GRPCInferenceService``, the standard ``grpc.health.v1.Health`` (the server as ""
and each model by name) and server reflection, under the HTTP limits (--max-body-bytes as
the message size limit) and drained on SIGTERM like HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from modelport.dataplane import DataPlane
from modelport.protocols.grpc_service import SERVICE, InferenceService
from modelport.protocols.proto import inference_pb2

log = logging.getLogger("modelport.grpc")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# How often Watch subscribers learn of a readiness change; Check is always current.
HEALTH_POLL_S = 1.0


class ReadinessHealth(health_aio.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health`` in step with readiness: "" and the service name report the
    server (ready while every model is), each model's name reports that model. Readiness
    changes on its own (workers stuck, restarting), so each Check refreshes the statuses it
    reads, and a cheap poll keeps Watch streams told."""

    def __init__(self, dataplane: DataPlane) -> None:
        super().__init__()
        self.dataplane = dataplane
        self._known: dict[str, int] = {}
        self._watches: set[asyncio.Task[Any]] = set()
        self._ending = False

    async def refresh(self) -> None:
        ready = self.dataplane.ready()
        for service in ("", SERVICE):
            await self._update(service, ready)
        models = self.dataplane.models
        repository = self.dataplane.repository
        # Every model known, loaded or not (listed first: loads and unloads change the dicts).
        for name in list(repository.entries if repository is not None else models):
            model = models.get(name)
            await self._update(name, model is not None and model.ready)

    async def _update(self, service: str, ready: bool) -> None:
        status = SERVING if ready else NOT_SERVING
        if self._known.get(service) != status:
            self._known[service] = status
            await self.set(service, status)

    async def Check(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's method name
        await self.refresh()
        return await super().Check(request, context)

    async def Watch(self, request: Any, context: Any) -> None:  # noqa: N802 - gRPC's method name
        task = asyncio.current_task()
        assert task is not None
        if self._ending:  # begun after SIGTERM: told, and ended at once
            await context.write(health_pb2.HealthCheckResponse(status=NOT_SERVING))
            return
        self._watches.add(task)
        try:
            await self.refresh()
            await super().Watch(request, context)
        except asyncio.CancelledError:
            if not self._ending:
                raise  # the client went away
            if hasattr(task, "uncancel"):  # Python >= 3.11: the cancel is handled, not pending
                task.uncancel()
        finally:
            self._watches.discard(task)

    async def shut_down(self) -> None:
        """Every status NOT_SERVING, told to the watchers, whose streams then end (OK), so an
        open Watch does not hold the shutdown until --graceful-timeout."""
        self._ending = True
        await self.enter_graceful_shutdown()
        await asyncio.sleep(0.05)  # the watchers write NOT_SERVING
        for task in list(self._watches):
            task.cancel()

    async def poll(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(HEALTH_POLL_S)


def _probe_bind(host: str, port: int) -> None:
    """Raise the OSError binding ``host:port`` gives ("Address already in use"), if any."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    """The files reflection describes. The inference messages live in a pool of their own
    (see scripts/gen_proto.sh), so reflection gets one holding them and the standard services."""
    pool = descriptor_pool.DescriptorPool()
    for file in (inference_pb2.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        pool.AddSerializedFile(file.serialized_pb)
    return pool


class GrpcServer:
    """Runs the gRPC services inside the caller's event loop (signals are the caller's)."""

    def __init__(
        self,
        dataplane: DataPlane,
        host: str,
        port: int,
        max_message_bytes: int,
        max_metadata_bytes: int = 64 * 1024,
        idle_timeout_s: float = 120.0,
    ) -> None:
        self.host = host
        self.port = port
        self.service = InferenceService(dataplane, max_message_bytes)
        self.health = ReadinessHealth(dataplane)
        # HTTP's limits, in grpc's terms: body -> message (both ways), head -> metadata, keep-alive -> idle.
        self.options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_metadata_size", max_metadata_bytes),
            ("grpc.max_connection_idle_ms", max(1000, int(idle_timeout_s * 1000))),
            # grpcio shares ports by default: a second server on this port must fail, not split the traffic.
            ("grpc.so_reuseport", 0),
        ]
        self._server: grpc.aio.Server | None = None
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind (an OSError here is the caller's to report) and start answering."""
        server = grpc.aio.server(options=self.options)
        handlers = self.service.method_handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        with contextlib.suppress(AttributeError):  # grpcio >= 1.62: a faster lookup by method
            server.add_registered_method_handlers(SERVICE, handlers)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
            pool=_reflection_pool(),
        )
        address = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        _probe_bind(self.host, self.port)  # grpcio's own bind error names no cause
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:  # grpcio raises where older versions returned 0
            raise OSError(str(exc)) from exc
        if port == 0:
            raise OSError(f"failed to bind to {address}")
        self.port = port
        await self.health.refresh()
        await server.start()
        self._server = server
        self._poller = asyncio.create_task(self.health.poll())
        log.info("listening on grpc://%s:%d", self.host, self.port)

    async def begin_drain(self) -> None:
        """SIGTERM: readiness turns false everywhere (ServerReady, every health status); open
        streams answer what they received and end."""
        self.service.begin_drain()
        if self._poller is not None:
            self._poller.cancel()
        await self.health.shut_down()

    async def stop(self, grace_s: float) -> None:
        """Stop accepting, let the calls in flight finish within ``grace_s``, cancel the rest."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._server is not None:
            await self._server.stop(grace_s)
