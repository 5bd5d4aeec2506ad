//! Fuzz targets: the parsers that read bytes other programs wrote (cards, heartbeat lines,
//! registrations, agent definitions, upstream SSE streams).
//!
//! Each target takes arbitrary bytes, must never panic, and checks what must hold of any
//! input it accepts. `fuzz/` runs them under libFuzzer (`cargo +nightly fuzz run card`);
//! the unit tests below run them on a stable toolchain over a seeded stream of random and
//! mutated inputs, so CI exercises every target on every change.

use crate::agent::{AgentDef, Registration};
use crate::card::Card;
use crate::heartbeat::Beat;
use crate::llm::wire::sse;

/// A "billion laughs" YAML document: nine anchors, each a list of nine aliases of the one
/// before, expanding to 9^9 strings. Hostile input for tests and `pas bench hostile`.
pub fn alias_bomb() -> String {
    let mut s = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (n, p) in (b'b'..=b'j').zip(b'a'..) {
        let (n, p) = (n as char, p as char);
        s.push_str(&format!(
            "{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        ));
    }
    s
}

/// Card parser: an accepted card keeps its text, and setting `result` or the `pas:` block
/// on it gives a card that parses again with the same typed fields.
pub fn card(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(card) = Card::parse("J-fuzz", text) else {
        return;
    };
    assert_eq!(card.text(), text, "parsing must not change the text");
    let meta = card.spec.pas.clone();
    let again = card.with_meta(&meta);
    let reparsed = Card::parse("J-fuzz", again.text()).expect("a card with its own meta parses");
    assert_eq!(reparsed.spec.title, card.spec.title);
    assert_eq!(reparsed.spec.requires, card.spec.requires);
    if let Ok(with) = card.with_key("result", &serde_yaml::Value::String("ok".into())) {
        assert_eq!(with.spec.title, card.spec.title);
    }
}

/// Heartbeat lines: an accepted beat serialises and parses back to itself.
pub fn heartbeat(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(beat) = Beat::parse(line) else {
        return;
    };
    let text = serde_json::to_string(&beat).expect("a beat serialises");
    let back = Beat::parse(&text).expect("a serialised beat parses");
    assert_eq!(back.ts, beat.ts);
    assert_eq!(back.status, beat.status);
    assert_eq!(back.epoch, beat.epoch);
}

/// Registrations: an accepted one holds numbers pas can do arithmetic on, and what pas
/// writes of it (epoch raised, `paused` set) parses back to the same registration.
pub fn registration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reg) = Registration::parse(text) else {
        return;
    };
    assert!(
        reg.epoch <= crate::card::MAX_EPOCH,
        "an epoch past the range was accepted"
    );
    assert!(reg
        .max_concurrent
        .is_none_or(|n| n <= crate::agent::MAX_SLOTS));
    let raised = Registration {
        epoch: crate::card::next_epoch(reg.epoch),
        paused: !reg.paused,
        ..reg.clone()
    };
    let back = Registration::parse(&raised.to_yaml()).expect("what pas writes parses");
    assert_eq!(back, raised);
}

/// Agent definitions: an accepted one has a valid name, and any interval it sets is either
/// used (a valid one) or ignored, never an overflow.
pub fn definition(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(def) = AgentDef::parse("fuzz", text) else {
        return;
    };
    assert!(crate::card::valid_agent_name(&def.name));
    assert!(def
        .max_concurrent
        .is_none_or(|n| n <= crate::agent::MAX_SLOTS));
    let agent = crate::agent::Agent {
        name: def.name.clone(),
        def: Some(def),
        ..Default::default()
    };
    let i = agent.interval_s(60.0);
    assert!(crate::config::valid_interval(i), "interval {i} used");
    let _ = crate::liveness::health(chrono::Utc::now(), i, chrono::Utc::now(), None);
}

/// SSE parser: the events do not depend on how the bytes were split into chunks.
pub fn sse(data: &[u8]) {
    let whole = {
        let mut p = sse::Parser::new();
        let mut out = Vec::new();
        let ok = p.push(data, &mut out).is_ok();
        if ok {
            p.finish(&mut out);
        }
        (ok, out)
    };
    // Split at a point taken from the data itself, then byte by byte.
    let cut = data
        .first()
        .map_or(0, |b| usize::from(*b) % (data.len() + 1));
    for chunks in [
        vec![&data[..cut], &data[cut..]],
        data.chunks(1).collect::<Vec<_>>(),
    ] {
        let mut p = sse::Parser::new();
        let mut out = Vec::new();
        let mut ok = true;
        for c in chunks {
            if p.push(c, &mut out).is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            p.finish(&mut out);
        }
        assert_eq!(ok, whole.0);
        if ok {
            assert_eq!(out, whole.1, "events depend on the chunking");
        }
    }
}

/// xorshift64*: a seeded stream, so a failure of a randomised test is reproducible from
/// its seed (the fuzz tests below, the board's incremental-plan property test).
#[cfg(test)]
pub(crate) struct Rng(pub u64);

#[cfg(test)]
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    /// Random inputs: seeds mutated (bytes flipped, spliced, cut, repeated) and noise.
    fn inputs(seeds: &[&str], n: usize, mut rng: Rng) -> Vec<Vec<u8>> {
        let alphabet = b"abc:-\n \t\"'{}[],#&*!|>%@`\\\r\x00\xff0129.title";
        (0..n)
            .map(|_| {
                let mut v = seeds[rng.below(seeds.len())].as_bytes().to_vec();
                for _ in 0..1 + rng.below(6) {
                    let at = rng.below(v.len() + 1);
                    match rng.below(5) {
                        0 if !v.is_empty() => {
                            let i = rng.below(v.len());
                            v[i] = alphabet[rng.below(alphabet.len())];
                        }
                        1 => v.insert(at, alphabet[rng.below(alphabet.len())]),
                        2 => v.truncate(at),
                        3 => {
                            let other = seeds[rng.below(seeds.len())].as_bytes();
                            let from = rng.below(other.len());
                            v.splice(at..at, other[from..].iter().copied());
                        }
                        _ => {
                            let piece = v[..at].to_vec();
                            v.extend_from_slice(&piece);
                        }
                    }
                }
                v
            })
            .collect()
    }

    #[test]
    fn card_target_holds_on_mutated_cards() {
        let seeds = [
            "title: fix the build\nrequires: [code, rust]\npriority: high\n",
            "title: x\npas:\n  state: inbox\n  attempts: 2\n  history:\n    - {at: 2026-01-01T00:00:00Z, from: inbox, to: done, by: a}\n",
            "title: \"quoted: yes\"\ndepends_on: [J-1]\nresources: {cpu: 2, mem_mb: 512}\nllm: {model: m, messages: [{role: user, content: hi}]}\n",
            "a: &x [1, 2]\nb: *x\ntitle: alias\n",
        ];
        for data in inputs(&seeds, 3000, Rng(0x5eed_0001)) {
            super::card(&data);
        }
    }

    #[test]
    fn heartbeat_target_holds_on_mutated_lines() {
        let seeds = [
            r#"{"ts":"2026-11-21T10:00:00Z","status":"running","ctx_used":900,"ctx_limit":1000,"epoch":2}"#,
            r#"{"ts":"2026-11-21T10:00:00.123+02:00","note":"ünïcode \u0000","job":"J-1","progress":0.5}"#,
        ];
        for data in inputs(&seeds, 5000, Rng(0x5eed_0002)) {
            super::heartbeat(&data);
        }
    }

    #[test]
    fn registration_target_holds_on_mutated_registrations() {
        let seeds = [
            "name: coder-1\nepoch: 3\ncapabilities: [code, rust]\nmax_concurrent: 2\n",
            "epoch: 9007199254740992\nheartbeat_interval_s: 0.5\npaused: true\nlabels: {team: a}\n",
            "registered_at: 2026-11-21T10:00:00Z\nrole: canary\npid: 4242\nurl: http://x\n",
            "a: &x [1, 2]\nlabels: *x\n",
        ];
        for data in inputs(&seeds, 3000, Rng(0x5eed_0004)) {
            super::registration(&data);
        }
    }

    #[test]
    fn definition_target_holds_on_mutated_definitions() {
        let seeds = [
            "---\nname: director-code\nparent: architect\ncapabilities: [plan, review]\nmax_concurrent: 2\nctx_limit: 200000\ntoken_budget: {target: 0.5, hard_max: 0.75}\nheartbeat_interval_s: 60\n---\nYou lead.\n",
            "---\nname: code-reviewer\ndescription: Reviews code\ntools: Read, Grep\nmodel: sonnet\n---\nbody\n",
            "---\nheartbeat_interval_s: 1e300\nmax_concurrent: 4294967295\n---\n",
        ];
        for data in inputs(&seeds, 3000, Rng(0x5eed_0005)) {
            super::definition(&data);
        }
    }

    #[test]
    fn sse_target_holds_on_mutated_streams() {
        let seeds = [
            "data: {\"a\":1}\n\ndata: [DONE]\n\n",
            "event: message_start\r\ndata: {}\r\n\r\n: comment\nevent: ping\ndata: x\ndata: y\n\n",
            "data:no space\rdata: two\r\r",
        ];
        for data in inputs(&seeds, 5000, Rng(0x5eed_0003)) {
            super::sse(&data);
        }
    }
}
