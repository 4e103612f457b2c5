"""The control-plane API: a gRPC ``Admin`` service that the CLI and the operator call.

* ``model``: the dataclasses the API speaks in and the ``ClusterAdmin`` interface that the cluster
  layer implements (this package only calls it).
* ``service``: the grpc.aio servicer, proto <-> model, Kafka errors -> gRPC status.
* ``server``: ``start_admin_server`` (the Admin service plus the standard health service).
* ``client``: ``AdminClient``, used by ``tidelog cluster ...`` and by the operator.
* ``pb``: code generated from ``proto/tidelog/admin/v1/admin.proto`` by ``scripts/gen_proto.sh``.
"""
