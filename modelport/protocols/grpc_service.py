"""``inference.GRPCInferenceService`` over the dataplane: the Open Inference Protocol's gRPC
methods and Triton's ``ModelStreamInfer``.

Every method goes through one wrapper, the gRPC edge: it parses the request, maps a
``ModelportError`` to its status code by ``errors.GRPC_STATUS`` (anything else is INTERNAL with
a generic message, the traceback in the log), holds responses to the message size limit and
records the request metrics with ``protocol="grpc"``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from modelport import logs, metrics
from modelport.dataplane import DataPlane
from modelport.errors import GRPC_STATUS, InvalidInput, ModelportError, PayloadTooLarge
from modelport.protocols.codecs import OFF_LOOP_BYTES, off_loop, output_nbytes
from modelport.protocols.grpc_tensors import decode_request, response_bytes, varint
from modelport.protocols.proto import inference_pb2 as pb
from modelport.protocols.v2_repository import load_model, load_uri, repository_of

log = logging.getLogger("modelport.grpc")

SERVICE = "inference.GRPCInferenceService"
_STREAM_PATH = f"/{SERVICE}/ModelStreamInfer"
INTERNAL_MESSAGE = "internal server error; see the server log"
# Requests of one ModelStreamInfer stream in flight at once; reading pauses past it.
STREAM_WINDOW = 128

_CODES: dict[str, grpc.StatusCode] = {code: grpc.StatusCode[name] for code, name in GRPC_STATUS.items()}
_READY = (
    pb.ServerReadyResponse(ready=False).SerializeToString(),
    pb.ServerReadyResponse(ready=True).SerializeToString(),
)
_MODEL_READY = (
    pb.ModelReadyResponse(ready=False).SerializeToString(),
    pb.ModelReadyResponse(ready=True).SerializeToString(),
)
_LIVE = pb.ServerLiveResponse(live=True).SerializeToString()


class _Call:
    """What the edge learns of a call while it runs: its model label and request id."""

    __slots__ = ("id", "model", "name", "request_id")

    def __init__(self) -> None:
        self.model = ""  # the metrics label: "" unless a model served here
        self.name = ""  # the model asked for
        self.id = ""  # the request's id, echoed
        self.request_id = ""  # the id the logs carry: the request's when sane, else a new one


Run = Callable[[bytes, grpc.aio.ServicerContext, _Call], Awaitable[bytes]]


def status_of(exc: BaseException, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message a failed call is answered with."""
    if isinstance(exc, ModelportError):
        return _CODES.get(exc.code, grpc.StatusCode.INTERNAL), exc.message
    log.error("unexpected error in %s", method, exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def _parse(message: type[Message], data: bytes) -> Any:
    try:
        return message.FromString(data)
    except DecodeError as exc:
        raise InvalidInput(f"the request is not a valid {message.__name__} message: {exc}") from exc


def _ended(context: grpc.aio.ServicerContext) -> str:
    """Why grpc cancelled a call: its deadline passed, or its client went away."""
    remaining = context.time_remaining()
    return "DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0 else "CANCELLED"


class InferenceService:
    """The service's methods; ``method_handlers()`` is what the gRPC server registers."""

    def __init__(self, dataplane: DataPlane, max_message_bytes: int) -> None:
        self.dataplane = dataplane
        self.max_message = max_message_bytes
        self.draining = False  # set on SIGTERM: ServerReady answers false while the server drains
        self._labels: dict[tuple[str, str], Any] = {}
        self._readers: set[asyncio.Future[None]] = set()  # of the open ModelStreamInfer streams
        meta = dataplane.server_metadata()
        self._server_metadata = pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta.get("extensions", [])
        ).SerializeToString()

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        # No (de)serializers: the edge parses and serializes, so a malformed message is
        # INVALID_ARGUMENT rather than grpcio's INTERNAL, and sizes are known without a pass.
        unary = grpc.unary_unary_rpc_method_handler
        return {
            "ServerLive": unary(self._unary("ServerLive", self._server_live)),
            "ServerReady": unary(self._unary("ServerReady", self._server_ready)),
            "ModelReady": unary(self._unary("ModelReady", self._model_ready)),
            "ServerMetadata": unary(self._unary("ServerMetadata", self._server_metadata_call)),
            "ModelMetadata": unary(self._unary("ModelMetadata", self._model_metadata)),
            "ModelInfer": unary(self._unary("ModelInfer", self._infer)),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(self._stream_infer),
            "RepositoryIndex": unary(self._unary("RepositoryIndex", self._repository_index)),
            "RepositoryModelLoad": unary(self._unary("RepositoryModelLoad", self._repository_load)),
            "RepositoryModelUnload": unary(self._unary("RepositoryModelUnload", self._repository_unload)),
        }

    def begin_drain(self) -> None:
        """SIGTERM: ServerReady turns false; streams stop reading, answer what they received
        and end, so an idle stream does not hold the shutdown until --graceful-timeout."""
        self.draining = True
        for reader in list(self._readers):
            reader.cancel()

    # --- the edge ---------------------------------------------------------------------------

    def _unary(self, method: str, run: Run) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        path = f"/{SERVICE}/{method}"

        async def handle(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
            started = time.perf_counter()
            call = _Call()
            try:
                reply = await run(data, context, call)
                self._check_size(len(reply))
            except asyncio.CancelledError:
                self._observe(call.model, _ended(context), started)
                raise
            except Exception as exc:
                code, message = status_of(exc, method)
                self._done(call, code, started, path, context)
                await context.abort(code, message)
            self._done(call, grpc.StatusCode.OK, started, path, context)
            return reply

        return handle

    async def _stream_infer(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Answers in the order of the requests, which run concurrently (up to STREAM_WINDOW)."""
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        # Answers in request order, then None once reading stopped (put by the reader's done
        # callback: whether it ended, failed, or was cancelled by the drain before it even ran).
        window: asyncio.Queue[asyncio.Future[bytes] | None] = asyncio.Queue()
        slots = asyncio.Semaphore(STREAM_WINDOW)

        async def read() -> None:
            async for data in requests:
                window.put_nowait(asyncio.ensure_future(self._stream_one(data, context)))
                await slots.acquire()  # past STREAM_WINDOW unanswered, stop reading

        reader = asyncio.ensure_future(read())
        reader.add_done_callback(lambda _: window.put_nowait(None))
        self._readers.add(reader)
        try:
            while (answer := await window.get()) is not None:
                yield await answer
                slots.release()
            if not reader.cancelled():  # cancelled: the drain stopped reading, the stream ends OK
                reader.result()  # a failed read ends the call with its error
        finally:
            self._readers.discard(reader)
            reader.cancel()
            while not window.empty():
                pending = window.get_nowait()
                if pending is not None:
                    pending.cancel()

    async def _stream_one(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """One streamed request's answer: its response, or its error in ``error_message``."""
        started = time.perf_counter()
        call = _Call()
        try:
            reply = await self._infer(data, context, call)
            self._check_size(len(reply) + 6)
        except asyncio.CancelledError:
            self._observe(call.model, _ended(context), started)
            raise
        except Exception as exc:
            code, message = status_of(exc, "ModelStreamInfer")
            self._done(call, code, started, _STREAM_PATH, context)
            failed = pb.ModelInferResponse(model_name=call.name, id=call.id)
            return pb.ModelStreamInferResponse(
                error_message=message, infer_response=failed
            ).SerializeToString()
        self._done(call, grpc.StatusCode.OK, started, _STREAM_PATH, context)
        # ModelStreamInferResponse{infer_response = reply}: field 2, length-delimited.
        return b"\x12" + varint(len(reply)) + reply

    def _check_size(self, size: int) -> None:
        if size > self.max_message:
            raise PayloadTooLarge(
                f"response of {size} bytes is over the message size limit of {self.max_message} bytes "
                "(--max-body-bytes)"
            )

    def _label(self, call: _Call, name: str) -> None:
        call.name = name
        call.model = name if name in self.dataplane.models else ""

    def _done(
        self,
        call: _Call,
        code: grpc.StatusCode,
        started: float,
        path: str,
        context: grpc.aio.ServicerContext,
    ) -> None:
        seconds = self._observe(call.model, code.name, started)
        if logs.access_enabled():
            logs.access("GRPC", path, code.value[0], seconds, call.request_id or None, context.peer())

    def _observe(self, model: str, status: str, started: float) -> float:
        seconds = time.perf_counter() - started
        children = self._labels.get((model, status))
        if children is None:
            children = self._labels[(model, status)] = (
                metrics.REQUEST_SECONDS.labels(model, "grpc"),
                metrics.REQUESTS.labels(model, "grpc", status),
            )
        children[0].observe(seconds)
        children[1].inc()
        return seconds

    # --- methods ----------------------------------------------------------------------------

    async def _server_live(self, data: bytes, context: grpc.aio.ServicerContext, call: _Call) -> bytes:
        _parse(pb.ServerLiveRequest, data)
        return _LIVE

    async def _server_ready(self, data: bytes, context: grpc.aio.ServicerContext, call: _Call) -> bytes:
        _parse(pb.ServerReadyRequest, data)
        return _READY[not self.draining and self.dataplane.ready()]

    async def _server_metadata_call(
        self, data: bytes, context: grpc.aio.ServicerContext, call: _Call
    ) -> bytes:
        _parse(pb.ServerMetadataRequest, data)
        return self._server_metadata

    async def _model_ready(self, data: bytes, context: grpc.aio.ServicerContext, call: _Call) -> bytes:
        msg = _parse(pb.ModelReadyRequest, data)
        self._label(call, msg.name)
        return _MODEL_READY[self.dataplane.model_ready(msg.name, msg.version or None)]

    async def _model_metadata(self, data: bytes, context: grpc.aio.ServicerContext, call: _Call) -> bytes:
        msg = _parse(pb.ModelMetadataRequest, data)
        self._label(call, msg.name)
        meta = self.dataplane.model_metadata(msg.name, msg.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta.get("versions", []),
            platform=meta.get("platform", ""),
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["inputs"]],
            outputs=[
                tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["outputs"]
            ],
        ).SerializeToString()

    async def _infer(self, data: bytes, context: grpc.aio.ServicerContext, call: _Call) -> bytes:
        size = len(data)
        big = size > OFF_LOOP_BYTES
        msg = (
            await off_loop(_parse, pb.ModelInferRequest, data) if big else _parse(pb.ModelInferRequest, data)
        )
        name = msg.model_name
        version = msg.model_version or None
        self._label(call, name)
        call.id = msg.id
        call.request_id = logs.request_id_from(msg.id or None)
        dataplane = self.dataplane
        dataplane.check(name, version)  # an unknown model is NOT_FOUND whatever its inputs
        request, raw = await off_loop(decode_request, msg, size) if big else decode_request(msg, size)
        remaining = context.time_remaining()
        if remaining is not None:
            request.deadline = asyncio.get_running_loop().time() + remaining
        token = logs.bind(call.request_id, call.model)
        try:
            response = await dataplane.infer(name, version, request)
        finally:
            logs.unbind(token)
        if output_nbytes(response.outputs) > OFF_LOOP_BYTES:
            return await off_loop(response_bytes, response, raw)
        return response_bytes(response, raw)

    # --- the model repository extension -----------------------------------------------------

    async def _repository_index(self, data: bytes, context: grpc.aio.ServicerContext, call: _Call) -> bytes:
        msg = _parse(pb.RepositoryIndexRequest, data)
        entry = pb.RepositoryIndexResponse.ModelIndex
        models = repository_of(self.dataplane).index(ready_only=msg.ready)
        return pb.RepositoryIndexResponse(models=[entry(**m) for m in models]).SerializeToString()

    async def _repository_load(self, data: bytes, context: grpc.aio.ServicerContext, call: _Call) -> bytes:
        msg = _parse(pb.RepositoryModelLoadRequest, data)
        name = _repository_model(msg)
        uri = load_uri({k: _repository_parameter(k, v) for k, v in msg.parameters.items()})
        await load_model(repository_of(self.dataplane), name, uri)
        return pb.RepositoryModelLoadResponse(model_name=name, isLoaded=True).SerializeToString()

    async def _repository_unload(self, data: bytes, context: grpc.aio.ServicerContext, call: _Call) -> bytes:
        msg = _parse(pb.RepositoryModelUnloadRequest, data)
        name = _repository_model(msg)
        # Its parameters (Triton's unload_dependents) change nothing here: a model has no dependents.
        await repository_of(self.dataplane).unload(name)
        return pb.RepositoryModelUnloadResponse(model_name=name, isUnloaded=True).SerializeToString()


def _repository_model(msg: Any) -> str:
    """Triton names the model in field 2 (field 1 is its repository); KServe in field 1."""
    name = str(msg.model_name or msg.repository_name)
    if not name:
        raise InvalidInput("the request names no model (model_name)")
    return name


def _repository_parameter(key: str, value: Any) -> Any:
    kind = value.WhichOneof("parameter_choice")
    return getattr(value, kind) if kind is not None else None
