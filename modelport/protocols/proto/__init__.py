"""The Open Inference Protocol's gRPC messages and service (``inference.proto``) and the stubs
generated from it by ``make proto``; do not edit the ``*_pb2*`` files by hand."""
