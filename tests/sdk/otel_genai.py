"""The OpenTelemetry Python SDK's OTLP/HTTP exporter sending GenAI spans to pas.

Usage: python3 otel_genai.py <gateway base url, e.g. http://127.0.0.1:6120>
An agent span with two chat spans below it: one with the current GenAI attributes
(gen_ai.input.messages / gen_ai.output.messages), one with the older indexed ones
(gen_ai.prompt.N.* / gen_ai.completion.N.*). Prints the trace id.
"""
import json
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

provider = TracerProvider(resource=Resource.create({"service.name": "otel-agent"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces")))
tracer = provider.get_tracer("pas-test")

with tracer.start_as_current_span("invoke_agent planner") as agent:
    agent.set_attribute("gen_ai.operation.name", "invoke_agent")
    trace_id = format(agent.get_span_context().trace_id, "032x")
    with tracer.start_as_current_span("chat gpt-new") as chat:
        chat.set_attribute("gen_ai.operation.name", "chat")
        chat.set_attribute("gen_ai.request.model", "gpt-new")
        chat.set_attribute("gen_ai.usage.input_tokens", 31)
        chat.set_attribute("gen_ai.usage.output_tokens", 7)
        chat.set_attribute("gen_ai.input.messages", json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "plan the release"}]}]))
        chat.set_attribute("gen_ai.output.messages", json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "step one"}]}]))
    with tracer.start_as_current_span("chat gpt-old") as old:
        old.set_attribute("gen_ai.system", "openai")
        old.set_attribute("gen_ai.request.model", "gpt-old")
        old.set_attribute("gen_ai.usage.prompt_tokens", 11)
        old.set_attribute("gen_ai.usage.completion_tokens", 3)
        old.set_attribute("gen_ai.prompt.0.role", "user")
        old.set_attribute("gen_ai.prompt.0.content", "old style question")
        old.set_attribute("gen_ai.completion.0.role", "assistant")
        old.set_attribute("gen_ai.completion.0.content", "old style answer")
    with tracer.start_as_current_span("execute_tool grep") as tool:
        tool.set_attribute("gen_ai.operation.name", "execute_tool")
        tool.set_attribute("http.request.header.authorization", "Bearer sk-otel-secret")

provider.shutdown()
print(json.dumps({"trace": trace_id}))
