"""The sample echo app's $disconnect Lambda: forgets the connection."""


def handler(event, context):
    print("disconnected", event["requestContext"]["connectionId"])
    return {"statusCode": 200}
