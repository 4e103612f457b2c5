"""Generated from ``proto/tidelog/admin/v1/admin.proto`` by ``scripts/gen_proto.sh``: never edit by hand.

``tests/unit/test_proto_fresh.py`` fails when these files differ from what the script makes. Used by
``tidelog.broker.admin.service`` (the servicer) and ``tidelog.broker.admin.client`` (the stub).
"""
