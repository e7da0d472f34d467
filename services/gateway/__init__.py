"""The unit systems' gateway: a gRPC process (not nameko: grpcio cannot run under eventlet)
through which ward and agency software calls the platform and exchanges events."""
