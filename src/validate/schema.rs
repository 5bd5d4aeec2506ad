//! Checking one document against a compiled JSON Schema, and wording what is wrong.
//!
//! A card, registration or config is YAML (or JSON), an agent definition is YAML front matter
//! above Markdown, a heartbeat file is one JSON object a line; each becomes JSON data checked
//! by `jsonschema`. Each problem gets a position ([`Problem`]): serde's for syntax errors,
//! else the offending node's, found by [`Doc`]; and a message naming the field by its JSON
//! pointer, with the schema's own description where a regex or a type would say less.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::Validator;
use serde_json::Value;

use super::locate::{segments, Doc, Node};
use super::{embedded_schema, Contract, Problem};

/// A compiled schema with its JSON, which error messages consult for descriptions.
pub(super) struct Schema {
    json: Value,
    validator: Validator,
}

impl Schema {
    pub(super) fn compile(text: &str) -> Result<Schema, String> {
        let json: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&json)
            .map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        Ok(Schema { json, validator })
    }

    /// The compiled built-in schema, compiled once per process.
    pub(super) fn embedded(contract: Contract) -> Result<&'static Schema, String> {
        static CACHE: [OnceLock<Result<Schema, String>>; 5] = [const { OnceLock::new() }; 5];
        CACHE[contract as usize]
            .get_or_init(|| Schema::compile(embedded_schema(contract)))
            .as_ref()
            .map_err(|e| format!("built-in {} schema is {e}", contract.name()))
    }
}

/// The problems of `text`, in the order of their positions.
pub(super) fn check(schema: &Schema, contract: Contract, text: &str) -> Vec<Problem> {
    let mut problems = match contract {
        Contract::Heartbeat => text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .flat_map(|(i, line)| shift(check_beat(schema, line), i))
            .collect(),
        Contract::Agent => match front_matter(text) {
            Ok(yaml) => shift(check_yaml(schema, yaml), 1),
            Err(problem) => vec![problem],
        },
        _ => check_yaml(schema, text),
    };
    problems.sort_by_key(|&(line, col, _)| (line, col));
    problems
}

/// Moves the problems of a sub-document down by `lines` lines.
fn shift(problems: Vec<Problem>, lines: usize) -> Vec<Problem> {
    let moved = |(line, col, msg): Problem| (line.map(|l| l + lines), col, msg);
    problems.into_iter().map(moved).collect()
}

/// The YAML between the opening `---` line and the closing one.
pub(super) fn front_matter(text: &str) -> Result<&str, Problem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    if lines.next().map(str::trim_end) != Some("---") {
        let msg = "missing front matter: an agent definition starts with a line `---`";
        return Err((Some(1), Some(1), msg.to_string()));
    }
    let start = text.find('\n').map_or(text.len(), |i| i + 1);
    let mut at = start;
    for line in lines {
        if line.trim_end() == "---" {
            return Ok(&text[start..at]);
        }
        at += line.len();
    }
    let msg = "unterminated front matter: no closing `---` line";
    Err((Some(1), Some(1), msg.to_string()))
}

fn check_yaml(schema: &Schema, text: &str) -> Vec<Problem> {
    // Through serde_yaml's own Value first: it rejects duplicate keys, serde_json's keeps the last.
    match serde_yaml::from_str::<serde_yaml::Value>(text) {
        Ok(yaml) => match serde_json::to_value(yaml) {
            Ok(value) => schema_problems(schema, &value, text),
            Err(e) => vec![(
                None,
                None,
                format!("YAML: cannot be read as JSON data: {e}"),
            )],
        },
        Err(e) => {
            let (line, col) = e.location().map(|l| (l.line(), l.column())).unzip();
            let msg = format!("YAML: {}", strip_position(&e.to_string()));
            vec![(line, col, msg)]
        }
    }
}

fn check_beat(schema: &Schema, line: &str) -> Vec<Problem> {
    match serde_json::from_str::<Value>(line) {
        Ok(value) => schema_problems(schema, &value, line),
        Err(e) => {
            let msg = format!("JSON: {}", strip_position(&e.to_string()));
            vec![(Some(1), Some(e.column().max(1)), msg)]
        }
    }
}

/// Drops the " at line 3 column 7" that serde adds; the finding carries the position.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    }
}

fn schema_problems(schema: &Schema, value: &Value, text: &str) -> Vec<Problem> {
    if value.is_null()
        && schema
            .validator
            .is_valid(&Value::Object(Default::default()))
    {
        // An empty (all-comment) document means "every default" where every key is
        // optional, as in the pas.yaml that `pas init` writes.
        return Vec::new();
    }
    if value.is_null() {
        let msg = "the document is empty; expected a mapping".to_string();
        return vec![(Some(1), Some(1), msg)];
    }
    let doc = Doc::new(text);
    // An unknown key is reported at the key, anything else at its value.
    let at = |found: Option<(Node, bool)>, key: bool| {
        let pick = |(n, whole): (Node, bool)| n.key.filter(|_| key && whole).unwrap_or(n.report);
        found.map(|f| doc.pos(pick(f))).unzip()
    };
    let mut out = Vec::new();
    for err in schema.validator.iter_errors(value) {
        let ptr = err.instance_path.as_str().to_string();
        let shown = if ptr.is_empty() { "/" } else { ptr.as_str() };
        let (line, col) = at(doc.find(&ptr), false);
        let msg = match &err.kind {
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), escape);
                format!("{ptr}/{name}: required field is missing")
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for key in unexpected {
                    let child = format!("{ptr}/{}", escape(key));
                    let (line, col) = at(doc.find(&child), true);
                    let key = Value::from(key.as_str());
                    out.push((
                        line,
                        col,
                        format!("{child}: unknown key {key} is not allowed here"),
                    ));
                }
                continue;
            }
            ValidationErrorKind::Enum { options } => {
                format!("{shown}: {} is not one of {options}", err.instance)
            }
            // The schema's description says what was meant better than a regex or a type.
            ValidationErrorKind::Pattern { .. } | ValidationErrorKind::Type { .. } => {
                let hint = describe(&schema.json, err.schema_path.as_str());
                format!(
                    "{shown}: {err}{}",
                    hint.map_or_else(String::new, |d| format!(" ({d})"))
                )
            }
            _ => format!("{shown}: {err}"),
        };
        out.push((line, col, msg));
    }
    out
}

/// The description of the schema that holds the keyword at `schema_path`, following `$ref`s;
/// none for the root, whose description is about the whole file.
fn describe<'a>(root: &'a Value, schema_path: &str) -> Option<&'a str> {
    let segments: Vec<String> = segments(schema_path)?.collect();
    let (_keyword, path) = segments.split_last().filter(|(_, path)| !path.is_empty())?;
    let mut node = root;
    for seg in path {
        node = if seg == "$ref" {
            root.pointer(node.get("$ref")?.as_str()?.strip_prefix('#')?)?
        } else {
            node.get(seg.as_str())?
        };
    }
    node.get("description")?.as_str()
}

/// Escapes a key for use as a JSON pointer segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::super::tests::CARD;
    use super::super::validate_text;
    use super::*;

    /// Asserts that each text has exactly one problem, on `line`, with `fragment` in its message.
    fn expect(cases: &[(Contract, &str, usize, &str)]) {
        for &(contract, text, line, fragment) in cases {
            let found = validate_text(contract, text);
            assert_eq!(found.len(), 1, "{text}\n{found:?}");
            assert_eq!(found[0].0, Some(line), "{text}\n{found:?}");
            assert!(
                found[0].2.contains(fragment),
                "{found:?} lacks {fragment:?}"
            );
        }
    }

    #[test]
    fn bad_cards_point_at_the_field() {
        assert_eq!(validate_text(Contract::Card, CARD), vec![]);
        #[rustfmt::skip]
        let cases = [
            ("priority: high", "priority: urgent", 5, r#"/priority: "urgent" is not one of ["critical","high","medium","low"]"#),
            ("[rust, test]", "gpu", 4, r#"/requires: "gpu" is not of type "array""#),
            ("title: Add a login page", "name: x", 1, "/title: required field is missing"),
            ("Add a login page", "|\n  one\n  two", 1, "/title: \"one\\ntwo\\n\" does not match"),
            ("\"0.50\"", "\"1.2.3\"", 7, "/budget_usd: \"1.2.3\" does not match"),
            ("\"0.50\"", "0.5", 7, "/budget_usd: 0.5 is not of type \"string\""),
            ("state: assigned", "state: lost", 11, "/pas/state: \"lost\" is not one of"),
            ("      by: pas", "      by: [pas]", 19, "/pas/history/0/by"),
            ("timeout_s: 90.5", "timeout_s: 0", 8, "/timeout_s: 0 is less than or equal"),
            ("{cpu: 0.5, ", "{cpu: 0.5, disk: 1, ", 6, "/resources/disk: unknown key"),
        ];
        for (from, to, line, fragment) in cases {
            expect(&[(Contract::Card, &CARD.replace(from, to), line, fragment)]);
        }
        let budget = validate_text(Contract::Card, &CARD.replace("\"0.50\"", "\"1.2.3\""));
        assert_eq!(budget[0].1, Some(13));
        #[rustfmt::skip]
        expect(&[
            (Contract::Card, "title: a\n  b: [\n", 2, "YAML: "),
            (Contract::Card, "{\"title\": \"x\",\n \"priority\": 3}", 2, "/priority: 3 is not"),
            (Contract::Card, "# nothing yet\n", 1, "empty"),
        ]);
    }

    #[test]
    fn config_unknown_key_is_named() {
        let found = validate_text(Contract::Config, "git:\n  enabled: true\ncolour: blue\n");
        let msg = r#"/colour: unknown key "colour" is not allowed here"#;
        assert_eq!(found, vec![(Some(3), Some(1), msg.to_string())]);
        let price = "providers:\n  - name: x\n    models:\n      - id: m\n        price_per_mtok: {input: 3.0}\n";
        #[rustfmt::skip]
        expect(&[
            (Contract::Config, "git:\n  enabled: true\n  autor: me\n", 3, "/git/autor"),
            (Contract::Config, price, 5, "/providers/0/models/0/price_per_mtok/input"),
        ]);
        let writes = "providers:\n  - name: x\n    protocol: anthropic\n    base_url: http://a\n    models:\n      - id: m\n        price_per_mtok: {input: \"3\", output: \"15\", cache_write: \"3.75\", cache_write_1h: \"6\"}\n";
        assert_eq!(validate_text(Contract::Config, writes), vec![]);
        // Every key the providers' parser takes, as the README's example uses them.
        let all = "providers:\n  - name: x\n    protocol: anthropic\n    base_url: http://a\n    timeout_s: 120\n    first_token_timeout_s: 30\n    models:\n      - {id: m, max_output_tokens: 8192}\n";
        assert_eq!(validate_text(Contract::Config, all), vec![]);
    }

    /// The README's gateway example is what users copy: the schema (`pas validate`) and
    /// the code that runs it must both take every key of it, and agree on bad values.
    #[test]
    fn the_readme_config_passes_the_schema_and_the_code() {
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
        let start = readme
            .find("# pas.yaml\n")
            .expect("the README's pas.yaml example");
        let yaml = &readme[start..];
        let yaml = &yaml[..yaml.find("```").expect("the example's end")];
        assert_eq!(validate_text(Contract::Config, yaml), vec![]);
        let cfg = crate::config::Config::parse(yaml).unwrap();
        let providers = crate::llm::config::providers(&cfg.providers).unwrap();
        assert!(providers.iter().any(|p| p.max_tokens_field.is_some()));
        assert!(providers
            .iter()
            .flat_map(|p| &p.models)
            .any(|m| m.max_output_tokens.is_some()));
        let b = crate::llm::config::budgets(cfg.budgets.as_ref()).unwrap();
        assert!(b.agent_daily_usd.is_some());
        let r = crate::llm::config::routing(cfg.routing.as_ref()).unwrap();
        assert!(r.cooldown_s.is_some());
        for bad in [
            "budgets: {alert_at: [0]}\n",
            "budgets: {alert_at: [1.5]}\n",
            "routing: {cooldown_s: 0}\n",
            "providers:\n  - {name: a, protocol: openai, base_url: \"http://x\", timeout_s: 0}\n",
        ] {
            assert_ne!(validate_text(Contract::Config, bad), vec![], "{bad}");
            let cfg = crate::config::Config::parse(bad).unwrap();
            let refused = crate::llm::config::providers(&cfg.providers).is_err()
                || crate::llm::config::budgets(cfg.budgets.as_ref()).is_err()
                || crate::llm::config::routing(cfg.routing.as_ref()).is_err();
            assert!(refused, "the code took {bad}");
        }
    }

    #[test]
    fn heartbeat_reports_the_bad_line() {
        let text = "{\"ts\":\"2025-01-01T00:00:00Z\",\"status\":\"idle\"}\n\
                    {\"ts\":\"2025-01-01T00:01:00Z\",\"progress\":0.5}\n\
                    {\"ts\":\"2025-01-01T00:02:00Z\",\"status\":\"sleeping\"}\n\n\
                    {\"ts\":\"2025-01-01T00:03:00Z\"}\n";
        let found = validate_text(Contract::Heartbeat, text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (Some(3), Some(39)));
        #[rustfmt::skip]
        expect(&[
            (Contract::Heartbeat, "{\"ts\":\"2025-01-01T00:00:00Z\"}\n{\"ts\": 1,", 2, "JSON: "),
            (Contract::Heartbeat, "{\"status\":\"idle\"}", 1, "/ts: required"),
            (Contract::Heartbeat, "{\"ts\":\"yesterday\"}", 1, "date-time"),
        ]);
    }

    #[test]
    fn agent_front_matter() {
        #[rustfmt::skip]
        expect(&[
            (Contract::Agent, "# no front matter\n", 1, "missing front matter"),
            (Contract::Agent, "---\nname: a\n", 1, "unterminated"),
            (Contract::Agent, "---\nname: a\nmax_concurrent: 0\n---\nhi\n", 3, "/max_concurrent"),
            (Contract::Agent, "---\nname: a\ntoken_budget: {hard_max: 2}\n---\n", 3, "/token_budget/hard_max"),
        ]);
        let plain = "---\nname: r\ndescription: d\ntools: Read, Grep\nmodel: haiku\n---\n";
        assert_eq!(validate_text(Contract::Agent, plain), vec![]);
    }
}
