#!/usr/bin/env bash
# Regenerate the Python code of the control-plane API (proto/tidelog/admin/v1/admin.proto) into
# broker/admin/pb/: messages (admin_pb2.py), gRPC stub and servicer (admin_pb2_grpc.py), and typing
# stubs for both (.pyi, by mypy-protobuf). The generated files are committed and never edited by
# hand; tests/unit/test_proto_fresh.py fails when they differ from what this script makes.
#
# Usage: scripts/gen_proto.sh [OUT_DIR]      (default: broker/admin/pb; works from any directory)
#   PYTHON=...  the interpreter that has grpcio-tools and mypy-protobuf (default: .venv/bin/python)
#
# Imports: protoc compiles the file under the virtual path tidelog/broker/admin/pb/admin.proto
# (`-I VIRTUAL=DIR`), so the generated code imports `from tidelog.broker.admin.pb import admin_pb2`,
# which is right for the package the files live in: no rewriting of the output. The protobuf
# package (what goes over the wire) is still `tidelog.admin.v1`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
out="$(realpath -m "${1:-$root/broker/admin/pb}")"
bin="$(dirname "$("$python" -c 'import sys; print(sys.executable)')")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cd "$root"
"$python" -m grpc_tools.protoc \
    -I tidelog/broker/admin/pb=proto/tidelog/admin/v1 \
    --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" \
    --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
    --python_out="$tmp" \
    --grpc_python_out="$tmp" \
    --mypy_out=quiet:"$tmp" \
    --mypy_grpc_out=quiet:"$tmp" \
    tidelog/broker/admin/pb/admin.proto

mkdir -p "$out"
for name in admin_pb2.py admin_pb2.pyi admin_pb2_grpc.py admin_pb2_grpc.pyi; do
    cp "$tmp/tidelog/broker/admin/pb/$name" "$out/$name"
done
