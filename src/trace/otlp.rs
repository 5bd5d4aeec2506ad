//! `POST /v1/traces` on the gateway's port: OTLP/HTTP, protobuf or JSON, decoded with the
//! official protos (`opentelemetry-proto`), and the OpenTelemetry GenAI attributes mapped
//! onto pas's spans, so an OpenTelemetry-instrumented agent needs no pas code.
//!
//! Both the current names (`gen_ai.input.messages`, `gen_ai.output.messages`) and the
//! older indexed ones (`gen_ai.prompt.N.role`, `gen_ai.completion.N.content`) are read:
//! tools that mapped only one of them ingested half their users' spans empty. Message
//! attributes become the span's input and output (stored once per distinct text, and
//! dropped under `capture: metadata`), not attributes.
//!
//! Bad input answers an OTLP error (a `google.rpc.Status`, in the request's encoding)
//! that says what is wrong; spans that cannot be taken (a bad id) are counted in the
//! answer's `partial_success` with the reason, and said as `trace.rejected`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::{json, Map, Value};

use crate::span::{Kind, Source, Span, Status};

/// `google.rpc.Status`, the body of an OTLP error answer.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Whether attribute `k` carries message text (mapped to input/output, or dropped).
pub fn content_attr(k: &str) -> bool {
    k == "gen_ai.input.messages"
        || k == "gen_ai.output.messages"
        || k == "gen_ai.system_instructions"
        || k.starts_with("gen_ai.prompt.")
        || k.starts_with("gen_ai.completion.")
        || k.starts_with("llm.input_messages.")
        || k.starts_with("llm.output_messages.")
        || k == "input.value"
        || k == "output.value"
}

/// An OTLP value as JSON (an int as a number; bytes as hex).
fn value(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(value).collect()),
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(attrs(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => json!(hex(b)),
        Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
    }
}

fn attrs(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, value)))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn time(nanos: u64) -> Option<DateTime<Utc>> {
    (nanos > 0).then(|| DateTime::from_timestamp_nanos(nanos.min(i64::MAX as u64) as i64))
}

/// A JSON-in-a-string attribute (how GenAI instrumentations send message lists), parsed.
fn json_attr(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

/// The messages of the older indexed attributes: `<prefix>.N.<field>` (role, content,
/// tool_calls...), in index order.
fn indexed(a: &Map<String, Value>, prefix: &str) -> Vec<Value> {
    let mut by: std::collections::BTreeMap<u64, Map<String, Value>> = Default::default();
    for (k, v) in a {
        let Some(rest) = k.strip_prefix(prefix) else {
            continue;
        };
        let Some((n, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        by.entry(n)
            .or_default()
            .insert(field.to_string(), v.clone());
    }
    by.into_values().map(Value::Object).collect()
}

/// The kind an OTLP span stands for: GenAI's operation name, else OpenInference's span
/// kind, else a step.
fn kind_of(a: &Map<String, Value>) -> Kind {
    let op = a.get("gen_ai.operation.name").and_then(Value::as_str);
    match op {
        Some("chat" | "text_completion" | "generate_content" | "embeddings") => return Kind::Llm,
        Some("execute_tool") => return Kind::Tool,
        Some("invoke_agent" | "create_agent") => return Kind::Agent,
        _ => {}
    }
    match a.get("openinference.span.kind").and_then(Value::as_str) {
        Some("LLM" | "EMBEDDING") => Kind::Llm,
        Some("TOOL") => Kind::Tool,
        Some("AGENT") => Kind::Agent,
        _ if a
            .keys()
            .any(|k| k.starts_with("gen_ai.usage.") || k == "gen_ai.request.model") =>
        {
            Kind::Llm
        }
        _ => Kind::Step,
    }
}

/// One OTLP span as pas's, or why it cannot be taken. `resource` holds the resource's
/// attributes (`service.name` names the agent when it is a valid agent name).
pub fn map_span(
    s: &opentelemetry_proto::tonic::trace::v1::Span,
    resource: &Map<String, Value>,
) -> Result<Span, String> {
    let trace_id = hex(&s.trace_id);
    let span_id = hex(&s.span_id);
    if !crate::span::valid_trace_id(&trace_id) {
        return Err(format!(
            "span {:?}: trace_id is not 16 bytes (not all zero)",
            s.name
        ));
    }
    if !crate::span::valid_span_id(&span_id) {
        return Err(format!(
            "span {:?}: span_id is not 8 bytes (not all zero)",
            s.name
        ));
    }
    let mut a = attrs(&s.attributes);
    let mut span = Span::new(&trace_id, &span_id, &s.name, kind_of(&a), Source::Otlp);
    span.name.truncate(512);
    let parent = hex(&s.parent_span_id);
    span.parent_id = crate::span::valid_span_id(&parent).then_some(parent);
    span.start = time(s.start_time_unix_nano).unwrap_or_else(Utc::now);
    span.end = time(s.end_time_unix_nano);
    span.status = match s.status.as_ref().map(|st| st.code) {
        Some(2) => Status::Error,
        _ if span.end.is_some() => Status::Ok,
        _ => Status::Running,
    };
    if let Some(st) = s.status.as_ref().filter(|st| !st.message.is_empty()) {
        a.insert("error".into(), json!(st.message));
    }
    let name_attr = |keys: &[&str], valid: fn(&str) -> bool| {
        keys.iter()
            .find_map(|k| {
                a.get(*k)
                    .or_else(|| resource.get(*k))
                    .and_then(Value::as_str)
            })
            .filter(|v| valid(v))
            .map(str::to_string)
    };
    span.agent = name_attr(
        &["pas.agent", "gen_ai.agent.name", "service.name"],
        crate::card::valid_agent_name,
    );
    span.job = name_attr(&["pas.job"], crate::card::valid_id);
    // The conversation: the current attributes, else the older indexed ones.
    let mut input = match a.get("gen_ai.input.messages") {
        Some(v) => json_attr(v),
        None => Value::Array(indexed(&a, "gen_ai.prompt.")),
    };
    if let Some(sys) = a.get("gen_ai.system_instructions") {
        input = json!({"system": json_attr(sys), "messages": input});
    } else {
        input = json!({ "messages": input });
    }
    let output = match a.get("gen_ai.output.messages") {
        Some(v) => json_attr(v),
        None => Value::Array(indexed(&a, "gen_ai.completion.")),
    };
    if input["messages"].as_array().is_some_and(|m| !m.is_empty()) || input.get("system").is_some()
    {
        span.input = Some(input);
    }
    if output.as_array().is_none_or(|m| !m.is_empty()) {
        span.output = Some(json!({ "messages": output }));
    }
    a.retain(|k, _| !content_attr(k));
    if !s.events.is_empty() {
        let events: Vec<Value> = s
            .events
            .iter()
            .map(|e| json!({"name": e.name, "at": time(e.time_unix_nano), "attrs": attrs(&e.attributes)}))
            .collect();
        a.insert("events".into(), Value::Array(events));
    }
    span.attrs = a;
    crate::span::llm_fields_from_attrs(&mut span);
    span.redact();
    Ok(span)
}

/// What the request's encoding is.
#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

fn encoding(h: &HeaderMap) -> Result<Encoding, String> {
    let ct = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        other => Err(format!(
            "content-type {other:?} is not OTLP/HTTP: send application/x-protobuf or application/json"
        )),
    }
}

/// Decodes an export request, or says why it is not one.
pub fn decode(body: &[u8], json_body: bool) -> Result<ExportTraceServiceRequest, String> {
    if json_body {
        serde_json::from_slice(body).map_err(|e| format!("the body is not OTLP JSON: {e}"))
    } else {
        ExportTraceServiceRequest::decode(body)
            .map_err(|e| format!("the body is not an OTLP protobuf ExportTraceServiceRequest: {e}"))
    }
}

/// The spans of an export request, and the reasons for those refused.
pub fn spans_of(req: &ExportTraceServiceRequest) -> (Vec<Span>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                match map_span(s, &resource) {
                    Ok(sp) => ok.push(sp),
                    Err(e) => bad.push(e),
                }
            }
        }
    }
    (ok, bad)
}

fn answer(enc: Encoding, status: StatusCode, code: i32, message: String) -> Response {
    let st = RpcStatus { code, message };
    let (ct, body) = match enc {
        Encoding::Protobuf => ("application/x-protobuf", st.encode_to_vec()),
        Encoding::Json => (
            "application/json",
            json!({"code": st.code, "message": st.message})
                .to_string()
                .into_bytes(),
        ),
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(ct));
    r
}

/// A gzip body unpacked, at most `limit` bytes of it: a small body that unpacks to
/// gigabytes (a zip bomb) is refused like a large one, without holding more than the cap.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("the gzip body does not unpack: {e}"),
            )
        })?;
    if out.len() > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body unpacks to more than the gateway's limit of {} MiB (gateway.max_body_mb in pas.yaml)",
                limit >> 20
            ),
        ));
    }
    Ok(out)
}

/// `POST /v1/traces` (routed by the gateway's HTTP layer): the spans go to `tracer`; a
/// body past `max_body_mb` MiB, packed or unpacked, is refused.
pub fn export(
    tracer: &super::Tracer,
    max_body_mb: u64,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let enc = encoding(headers);
    let shown = enc.clone().unwrap_or(Encoding::Json);
    let refuse = |status: StatusCode, code: i32, why: String| {
        tracer.reject("POST /v1/traces", &why);
        answer(shown, status, code, why)
    };
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let why = format!(
                "the body is larger than the gateway's limit of {} MiB (gateway.max_body_mb in pas.yaml): export in smaller batches",
                max_body_mb
            );
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, 8, why);
        }
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                3,
                format!("cannot read the body: {}", e.body_text()),
            )
        }
    };
    let enc = match enc {
        Ok(e) => e,
        Err(why) => return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, why),
    };
    let limit = crate::config::mib(max_body_mb);
    let ce = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    let bytes = match ce {
        None => bytes,
        Some(ce) if ce.eq_ignore_ascii_case("identity") => bytes,
        Some(ce) if ce.eq_ignore_ascii_case("gzip") => match gunzip(&bytes, limit) {
            Ok(b) => Bytes::from(b),
            Err((status, why)) => {
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    8
                } else {
                    3
                };
                return refuse(status, code, why);
            }
        },
        Some(ce) => {
            let why = format!("content-encoding {ce:?} is not taken: export uncompressed or gzip");
            return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, 3, why);
        }
    };
    let req = match decode(&bytes, enc == Encoding::Json) {
        Ok(r) => r,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, 3, why),
    };
    let (spans, bad) = spans_of(&req);
    for why in &bad {
        tracer.reject("POST /v1/traces", why);
    }
    tracer.record_many(spans.into_iter().map(|s| (s, false)).collect());
    let resp = ExportTraceServiceResponse {
        partial_success: (!bad.is_empty()).then(|| ExportTracePartialSuccess {
            rejected_spans: bad.len() as i64,
            error_message: bad.join("; "),
        }),
    };
    let (ct, body) = match enc {
        Encoding::Protobuf => ("application/x-protobuf", resp.encode_to_vec()),
        Encoding::Json => (
            "application/json",
            serde_json::to_vec(&resp).unwrap_or_default(),
        ),
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(ct));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genai_json_maps_both_attribute_generations() {
        let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"coder-1"}}]},
          "scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"chat gpt-x",
             "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000001000000000",
             "attributes":[
               {"key":"gen_ai.operation.name","value":{"stringValue":"chat"}},
               {"key":"gen_ai.request.model","value":{"stringValue":"gpt-x"}},
               {"key":"gen_ai.usage.input_tokens","value":{"intValue":"12"}},
               {"key":"gen_ai.usage.output_tokens","value":{"intValue":"5"}},
               {"key":"gen_ai.prompt.0.role","value":{"stringValue":"user"}},
               {"key":"gen_ai.prompt.0.content","value":{"stringValue":"hello"}},
               {"key":"gen_ai.completion.0.content","value":{"stringValue":"hi"}},
               {"key":"http.request.header.authorization","value":{"stringValue":"Bearer sk-secret"}}]},
            {"traceId":"00","spanId":"eee19b7ec3c1b175","name":"bad"}]}]}]}"#;
        let req = decode(body.as_bytes(), true).unwrap();
        let (spans, bad) = spans_of(&req);
        assert_eq!(bad.len(), 1, "{bad:?}");
        let s = &spans[0];
        assert_eq!(s.kind, Kind::Llm);
        assert_eq!((s.input_tokens, s.output_tokens), (Some(12), Some(5)));
        assert_eq!(s.model.as_deref(), Some("gpt-x"));
        assert_eq!(s.agent.as_deref(), Some("coder-1"));
        assert_eq!(s.input.as_ref().unwrap()["messages"][0]["content"], "hello");
        assert_eq!(s.output.as_ref().unwrap()["messages"][0]["content"], "hi");
        assert!(!s.attrs.contains_key("gen_ai.prompt.0.content"));
        assert_eq!(s.attrs["http.request.header.authorization"], "[redacted]");
        assert!(!serde_json::to_string(s).unwrap().contains("sk-secret"));
    }

    #[test]
    fn protobuf_round_trip_and_garbage_is_refused() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PSpan};
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![PSpan {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "tool call".into(),
                        attributes: vec![KeyValue {
                            key: "gen_ai.operation.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("execute_tool".into())),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let back = decode(&req.encode_to_vec(), false).unwrap();
        let (spans, _) = spans_of(&back);
        assert_eq!(spans[0].kind, Kind::Tool);
        assert!(decode(b"\xff\xff\xff garbage", false).is_err());
        assert!(decode(b"{not json", true).is_err());
    }
}
