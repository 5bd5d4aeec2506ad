//! Tests of card parsing, validation and rewriting.

use super::*;

const GOOD: &str = "# a comment the user wrote\ntitle: Write the parser\npriority: high\nrequires: [rust, parse]\ncustom_field:\n  nested: 1   # keep me\ndepends_on: [J-1]\n";

#[test]
fn parses_typed_fields_and_keeps_others() {
    let c = Card::parse("J-2", GOOD).unwrap();
    assert_eq!(c.spec.title, "Write the parser");
    assert_eq!(c.spec.priority, Priority::High);
    assert_eq!(c.spec.requires, vec!["rust", "parse"]);
    assert_eq!(c.spec.depends_on, vec!["J-1"]);
    assert_eq!(c.spec.pas, PasMeta::default());
}

#[test]
fn meta_rewrite_keeps_user_text_byte_for_byte() {
    let c = Card::parse("J-2", GOOD).unwrap();
    let meta = PasMeta {
        state: Some(State::Assigned),
        assigned_to: Some("coder-1".into()),
        attempts: 1,
        ..PasMeta::default()
    };
    let c2 = c.with_meta(&meta);
    assert!(c2.text().starts_with(GOOD), "{}", c2.text());
    let again = Card::parse("J-2", c2.text()).unwrap();
    assert_eq!(again.spec.pas, meta);
    // Rewriting again replaces the block rather than appending a second one.
    let c3 = again.with_meta(&PasMeta::default());
    assert_eq!(c3.text().matches("\npas:").count(), 1);
    assert!(c3.text().starts_with(GOOD));
}

#[test]
fn pas_block_in_the_middle_is_replaced_in_place() {
    let text = "title: t\npas:\n  state: inbox\n  attempts: 2\nafter: kept\n";
    let c = Card::parse("a", text).unwrap();
    let c2 = c.with_meta(&PasMeta {
        attempts: 3,
        ..Default::default()
    });
    let again = Card::parse("a", c2.text()).unwrap();
    assert_eq!(again.spec.pas.attempts, 3);
    assert!(c2.text().contains("after: kept"));
}

#[test]
fn flow_style_cards_work() {
    let c = Card::parse("f", "{title: flow, priority: low, x: 1}").unwrap();
    assert_eq!(c.spec.priority, Priority::Low);
    let c2 = c.with_meta(&PasMeta {
        attempts: 1,
        ..Default::default()
    });
    let again = Card::parse("f", c2.text()).unwrap();
    assert_eq!(again.spec.pas.attempts, 1);
    assert!(c2.text().contains("x: 1"));
}

#[test]
fn errors_name_line_and_column() {
    let e = Card::parse("a", "title: x\npriority: urgent\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.message.contains("urgent"), "{e}");
    let e = Card::parse("a", "title: x\nrequires: gpu\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = Card::parse("a", "title: [unclosed\n").unwrap_err();
    assert!(e.line.is_some(), "{e}");
    assert!(
        !e.message.contains("invalid type"),
        "syntax error first: {e}"
    );
    let e = Card::parse("a", "description: no title\n").unwrap_err();
    assert!(e.message.contains("title"), "{e}");
    let e = Card::parse("a", "title: \"two\\nlines\"\n").unwrap_err();
    assert_eq!(e.line, Some(1));
    let e = Card::parse("a", "title: x\npas: {state: bogus}\n").unwrap_err();
    assert!(e.message.contains("bogus"), "{e}");
    let e = Card::parse("a", "- a list\n").unwrap_err();
    assert!(e.message.contains("mapping"), "{e}");
    let e = Card::parse("a", "title: x\nbudget_usd: 1.2.3\n").unwrap_err();
    assert_eq!(e.line, Some(2));
    let e = Card::parse("a", "title: x\ntitle: y\n").unwrap_err();
    assert!(e.message.contains("duplicate"), "{e}");
}

#[test]
fn ids_are_checked() {
    assert!(valid_id("J-7"));
    assert!(valid_id("01HZX.task_1"));
    assert!(!valid_id(""));
    assert!(!valid_id(".hidden"));
    assert!(!valid_id("../etc"));
    assert!(!valid_id("a b"));
    assert!(!valid_id(&"a".repeat(129)));
    assert!(valid_id(&"a".repeat(128)));
    assert!(Card::parse("bad id", "title: x\n").is_err());
}

#[test]
fn bytes_are_checked() {
    assert!(check_bytes(b"title: x\n").is_ok());
    assert!(check_bytes(b"title: \0x")
        .unwrap_err()
        .message
        .contains("NUL"));
    assert!(check_bytes(&[0xff, 0xfe]).is_err());
    assert!(check_bytes(&vec![b'a'; 1024 * 1024 + 1]).is_err());
}

#[test]
fn alias_bombs_are_refused() {
    let mut t = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    for i in 0..12 {
        t.push_str(&format!(
            "b{i}: &b{i} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n",
            p = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            }
        ));
    }
    t.push_str("title: boom\n");
    assert!(Card::parse("x", &t).is_err());
}

#[test]
fn deep_nesting_is_refused_quickly() {
    let start = std::time::Instant::now();
    let nest = |d: usize| format!("title: deep\nextra: {}1{}\n", "[".repeat(d), "]".repeat(d));
    assert!(
        Card::parse("a", &nest(40)).is_ok(),
        "within serde_yaml's limit of 128"
    );
    let e = Card::parse("a", &nest(129)).unwrap_err();
    assert!(e.message.contains("nested more than 128"), "{e}");
    assert!(Card::parse("a", &nest(100)).is_ok());
    for depth in [300, 100_000] {
        let e = Card::parse("a", &nest(depth)).unwrap_err();
        assert!(e.message.contains("nested more than 128"), "{depth}: {e}");
        assert_eq!(e.line, Some(2));
    }
    let mut block = String::from("title: deep\nx:\n");
    for i in 1..200 {
        block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
    }
    assert!(Card::parse("a", &block).is_err());
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // Ordinary nesting is fine.
    assert!(Card::parse("a", "title: t\nx: [[1, [2]], {a: [b]}]\n").is_ok());
}

#[test]
fn set_result_keeps_everything_else() {
    let c = Card::parse("J-2", GOOD).unwrap();
    let c2 = c
        .with_key("result", &serde_yaml::Value::String("all good".into()))
        .unwrap();
    assert!(c2.text().starts_with(GOOD));
    assert!(c2.text().contains("result: all good"));
}

/// Every number and date an agent writes is range-checked when the card is read: a card
/// with `timeout_s: 1e13` once panicked the daemon on every start.
#[test]
fn numbers_out_of_range_are_refused_naming_the_key() {
    for (text, key) in [
        ("title: t\ntimeout_s: 1e13\n", "timeout_s"),
        ("title: t\ntimeout_s: 31536001\n", "timeout_s"),
        ("title: t\ntimeout_s: .nan\n", "timeout_s"),
        ("title: t\nmax_attempts: 1000001\n", "max_attempts"),
        (
            "title: t\nresources: {mem_mb: 18446744073709551615}\n",
            "resources.mem_mb",
        ),
        ("title: t\nresources: {cpu: 1e300}\n", "resources.cpu"),
        ("title: t\npas: {attempts: 4294967295}\n", "pas.attempts"),
        ("title: t\npas: {epoch: 9007199254740993}\n", "pas.epoch"),
        (
            "title: t\npas: {assigned_at: '+10000-01-01T00:00:00Z'}\n",
            "outside the years",
        ),
        (
            "title: t\npas: {history: [{at: '1000-01-01T00:00:00Z', from: new, to: inbox}]}\n",
            "1000-01-01",
        ),
    ] {
        let e = Card::parse("J-1", text).unwrap_err();
        assert!(e.message.contains(key), "{text:?}: {e}");
    }
    // The edges themselves are accepted.
    Card::parse(
        "J-1",
        "title: t\ntimeout_s: 31536000\nmax_attempts: 1000000\n",
    )
    .unwrap();
    Card::parse(
        "J-1",
        "title: t\npas: {epoch: 9007199254740992, attempts: 1000000}\n",
    )
    .unwrap();
}

#[test]
fn a_deadline_past_the_last_date_saturates() {
    let late = DateTime::<Utc>::MAX_UTC - chrono::TimeDelta::days(1);
    assert_eq!(after(late, MAX_TIMEOUT_S), DateTime::<Utc>::MAX_UTC);
    let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    assert_eq!(after(t, 1.5), t + chrono::TimeDelta::milliseconds(1500));
    assert_eq!(after(t, f64::NAN), t);
}
