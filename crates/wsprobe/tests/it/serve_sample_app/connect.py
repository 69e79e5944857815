"""The sample echo app's $connect Lambda: lets in clients with `Authorization: Bearer
token` (the blog's transcript), refuses the rest with 401, and records the connection."""

import os


def handler(event, context):
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    expected = "Bearer " + os.environ.get("EXPECTED_TOKEN", "token")
    if headers.get("authorization") != expected:
        return {"statusCode": 401, "body": '{"message":"Unauthorized"}'}
    print("connected", event["requestContext"]["connectionId"])
    return {"statusCode": 200}
