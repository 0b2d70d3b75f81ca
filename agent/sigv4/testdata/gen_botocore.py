#!/usr/bin/env python3
"""Regenerates botocore.json: requests signed by botocore's SigV4Auth (the
AWS CLI's signer) at a fixed time, as a server receives them.

    python3 gen_botocore.py > botocore.json
"""
import base64
import datetime
import json
import sys
from urllib.parse import urlsplit

import botocore
import botocore.auth
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

NOW = datetime.datetime(2026, 1, 23, 14, 15, 0, tzinfo=datetime.timezone.utc)
botocore.auth.get_current_datetime = lambda: NOW

AKID, SECRET = "AKIDEXAMPLEBOTOCORE1", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"
ENDPOINT = "http://127.0.0.1:8080"


def vector(name, method, url, headers, body, service="kms", token=None):
    req = AWSRequest(method=method, url=url, data=body)
    for k, v in headers:
        req.headers[k] = v  # email.message semantics: a repeated name adds a value
    creds = Credentials(AKID, SECRET, token)
    auth = botocore.auth.SigV4Auth(creds, service, REGION)
    auth.add_auth(req)
    parts = urlsplit(url)
    wire = [("Host", parts.netloc)] + [(k, v) for k, v in req.headers.items()]
    return emit(name, method, parts, wire, body, service)


def emit(name, method, parts, wire, body, service):
    if isinstance(body, str):
        body = body.encode()
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return {
        "name": name,
        "method": method,
        "target": target,
        "headers": [[k, v] for k, v in wire],
        "body_b64": base64.b64encode(body or b"").decode(),
        "access_key_id": AKID,
        "secret": SECRET,
        "region": REGION,
        "service": service,
        "now": NOW.strftime("%Y%m%dT%H%M%SZ"),
    }


class Captured(Exception):
    pass


def client_vector(name, op, params, token=None):
    """Runs a real botocore KMS client (what `aws kms ...` uses) and captures
    the prepared request instead of sending it."""
    sess = botocore.session.get_session()
    client = sess.create_client(
        "kms", region_name=REGION, endpoint_url=ENDPOINT,
        aws_access_key_id=AKID, aws_secret_access_key=SECRET, aws_session_token=token)
    got = {}

    def before_send(request, **_):
        got["req"] = request
        raise Captured()

    client.meta.events.register("before-send.kms.*", before_send)
    try:
        getattr(client, op)(**params)
    except Captured:
        pass
    r = got["req"]
    parts = urlsplit(r.url)
    wire = [("Host", parts.netloc)] + [(k, v.decode() if isinstance(v, bytes) else v) for k, v in r.headers.items()]
    return emit(name, r.method, parts, wire, r.body or b"", "kms")


def main():
    vs = [
        client_vector("client_encrypt", "encrypt", {"KeyId": "alias/app", "Plaintext": b"hello world"}),
        client_vector("client_list_keys_session_token", "list_keys", {"Limit": 10}, token="FQoGZXIvYXdzEXAMPLETOKEN//+=="),
        vector("auth_post_json", "POST", ENDPOINT + "/",
               [("Content-Type", "application/x-amz-json-1.1"), ("X-Amz-Target", "TrentService.Decrypt")],
               '{"CiphertextBlob":"AQID"}'),
        vector("auth_get_path_query", "GET",
               ENDPOINT + "/a%20b/c~d/%2Fx/%E2%82%AC?b=2&a=1&a=0&c=%20x%2By&d",
               [("X-Amz-Target", "TrentService.ListKeys")], b""),
        vector("auth_header_spaces_and_repeats", "POST", ENDPOINT + "/",
               [("Content-Type", "application/x-amz-json-1.1"), ("X-Custom", "  a   b  c  "),
                ("X-Multi", "one"), ("X-Multi", "two  three")], "{}"),
        vector("auth_dot_segments", "GET", ENDPOINT + "/a/./b/../c//d/", [], b""),
        vector("auth_binary_body", "PUT", ENDPOINT + "/upload",
               [("Content-Type", "application/octet-stream")], bytes(range(256)) * 3),
        vector("auth_other_service", "POST", ENDPOINT + "/", [("X-Amz-Target", "Foo.Bar")], "{}", service="sts"),
    ]
    json.dump({"botocore_version": botocore.__version__, "vectors": vs}, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
