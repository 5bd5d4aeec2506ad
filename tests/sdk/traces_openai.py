"""The official OpenAI Python client calling the pas gateway inside a W3C trace.

Usage: python3 traces_openai.py <gateway base url> <trace id> <parent span id>
Prints one JSON line with the headers pas answered; the Rust test checks the span.
"""
import json
import sys

import openai

base, trace, parent = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base, api_key="sk-test-must-never-be-stored", max_retries=0)
raw = client.chat.completions.with_raw_response.create(
    model="gpt-x",
    messages=[
        {"role": "system", "content": "You answer in one line."},
        {"role": "user", "content": "What is a span?"},
    ],
    max_tokens=20,
    temperature=0.2,
    extra_headers={"traceparent": f"00-{trace}-{parent}-01", "x-pas-agent": "sdk-agent"},
)
completion = raw.parse()
print(json.dumps({
    "text": completion.choices[0].message.content,
    "trace": raw.headers.get("x-pas-trace-id"),
    "span": raw.headers.get("x-pas-span-id"),
    "receipt": raw.headers.get("x-pas-receipt"),
    "cost": raw.headers.get("x-pas-cost-usd"),
}))
