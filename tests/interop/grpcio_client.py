"""A stock grpcio client, default options: Mesh.NodeInfo and grpc.health.v1 Check.

    grpcio_client.py unix:/path/node.sock
    grpcio_client.py HOST:PORT CERTS_DIR SERVER_NAME   (mutual TLS: ca.pem, client.pem, client.key)

Prints one JSON line: {"tenant_id", "host", "health"} or {"error": CODE, "details"}. No
generated stubs and no protobuf package: the two replies are decoded by hand below.
"""
import json
import sys

import grpc


def fields(buf):
    """Top-level protobuf fields: {number: value} (varints and length-delimited only)."""
    out, i = {}, 0
    while i < len(buf):
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], i = varint(buf, i)
        elif wire == 2:
            n, i = varint(buf, i)
            out[number], i = buf[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wire} not expected")
    return out


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def main():
    target = sys.argv[1]
    if target.startswith("unix:"):
        channel = grpc.insecure_channel(target)
    else:
        certs, name = sys.argv[2], sys.argv[3]
        read = lambda f: open(f"{certs}/{f}", "rb").read()
        creds = grpc.ssl_channel_credentials(
            root_certificates=read("ca.pem"), private_key=read("client.key"), certificate_chain=read("client.pem")
        )
        channel = grpc.secure_channel(target, creds, options=[("grpc.ssl_target_name_override", name)])
    raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        info = fields(channel.unary_unary("/fleet.v1.Mesh/NodeInfo", **raw)(b"", timeout=10))
        health = fields(channel.unary_unary("/grpc.health.v1.Health/Check", **raw)(b"", timeout=10))
    except grpc.RpcError as e:
        print(json.dumps({"error": e.code().name, "details": e.details()}))
        return
    print(json.dumps({
        "tenant_id": info.get(1, b"").decode(),
        "host": info.get(2, b"").decode(),
        "health": health.get(1, 0),
    }))


main()
