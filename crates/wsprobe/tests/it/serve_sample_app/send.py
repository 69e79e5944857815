"""The sample echo app's send Lambda: posts the message's `body` field, as JSON, back to
the sender through the @connections API, at the endpoint built from the event as the
blog's handler builds it (`https://{domainName}/{stage}`; SCHEME=http for a plain local
server)."""

import json
import os

import boto3


def handler(event, context):
    request = event["requestContext"]
    body = json.loads(event["body"])["body"]
    scheme = os.environ.get("SCHEME", "https")
    endpoint = f"{scheme}://{request['domainName']}/{request['stage']}"
    client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    client.post_to_connection(ConnectionId=request["connectionId"], Data=json.dumps(body).encode())
    return {"statusCode": 200}
