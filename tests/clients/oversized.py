"""Sends a JSON body of SIZE bytes to URL with Python's requests and prints the answer
as `STATUS BODY` (or the error, with exit code 1). Used by tests/suite/oversized.rs."""
import json
import sys

import requests

url, size = sys.argv[1], int(sys.argv[2])
body = json.dumps({"name": "big", "type": "noop", "payload": {"blob": "x" * size}})
try:
    res = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
    print(res.status_code, res.text)
except requests.RequestException as error:
    print("error", error)
    sys.exit(1)
