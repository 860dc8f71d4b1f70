"""Signs a webhook as Twilio does, with Twilio's own library (the provider's reference
implementation), so the SMS tests do not check our signature code against itself.

stdin: {"token": "...", "url": "...", "params": [["Name", "value"], ...]}
stdout: the X-Twilio-Signature value.
"""
import json
import sys

from twilio.request_validator import RequestValidator

request = json.load(sys.stdin)
params = {name: value for name, value in request["params"]}
print(RequestValidator(request["token"]).compute_signature(request["url"], params))
