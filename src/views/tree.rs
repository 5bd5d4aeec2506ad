//! The agent hierarchy from `parent` links (`pas agents --tree`, `/api/tree`): agents
//! whose parent is unknown, or who sit in a cycle, are roots, so every agent appears once.
//! The dashboard's nodes carry each agent's own and its subtree's cost, tokens and jobs.

use std::collections::{BTreeMap, HashMap, HashSet};

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// One item and the items below it.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch<T> {
    pub item: T,
    pub children: Vec<Branch<T>>,
}

/// The forest of `rows` by `name` and `parent`, in the rows' order: first the roots
/// (parent unknown), depth first, then whatever a cycle kept from every root.
pub fn forest<'a, T>(
    rows: &'a [T],
    name: impl Fn(&T) -> &str,
    parent: impl Fn(&T) -> Option<&str>,
) -> Vec<Branch<&'a T>> {
    let names: HashSet<&str> = rows.iter().map(&name).collect();
    let mut children: HashMap<&str, Vec<&'a T>> = HashMap::new();
    let mut roots = Vec::new();
    for r in rows {
        match parent(r).filter(|p| names.contains(p)) {
            Some(p) => children.entry(p).or_default().push(r),
            None => roots.push(r),
        }
    }
    fn grow<'a, T>(
        r: &'a T,
        name: &impl Fn(&T) -> &str,
        children: &HashMap<&str, Vec<&'a T>>,
        seen: &mut HashSet<String>,
    ) -> Option<Branch<&'a T>> {
        let me = name(r);
        if !seen.insert(me.to_string()) {
            return None;
        }
        let kids = (children.get(me).into_iter().flatten())
            .filter_map(|c| grow(*c, name, children, seen))
            .collect();
        Some(Branch {
            item: r,
            children: kids,
        })
    }
    let mut seen = HashSet::new();
    let mut out: Vec<Branch<&T>> = (roots.into_iter())
        .filter_map(|r| grow(r, &name, &children, &mut seen))
        .collect();
    // Cycles: whatever no root reached.
    out.extend(
        rows.iter()
            .filter_map(|r| grow(r, &name, &children, &mut seen)),
    );
    out
}

/// The forest flattened depth first, each item with its depth (for an indented table).
pub fn indented<T>(forest: &[Branch<T>]) -> Vec<(usize, &T)> {
    fn walk<'a, T>(b: &'a Branch<T>, depth: usize, out: &mut Vec<(usize, &'a T)>) {
        out.push((depth, &b.item));
        for c in &b.children {
            walk(c, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    for b in forest {
        walk(b, 0, &mut out);
    }
    out
}

/// Cost, tokens and jobs (by column) of an agent or a subtree.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Rollup {
    #[serde(rename = "cost_usd", serialize_with = "decimal")]
    pub cost: Decimal,
    pub tokens: u64,
    pub jobs: BTreeMap<String, u64>,
}

fn decimal<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.normalize().to_string())
}

impl Rollup {
    fn add(&mut self, o: &Rollup) {
        self.cost += o.cost;
        self.tokens = self.tokens.saturating_add(o.tokens);
        for (k, n) in &o.jobs {
            *self.jobs.entry(k.clone()).or_default() += n;
        }
    }
}

/// An agent of the dashboard's tree: the agent as `/api/agents` shows it, its own and its
/// subtree's roll-ups, and its children.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    #[serde(flatten)]
    pub agent: Value,
    pub own: Rollup,
    pub subtree: Rollup,
    pub children: Vec<Node>,
}

/// What each agent spent (`by_agent` of the costs document) and holds (`agent` and
/// `state` of the kanban cards).
fn own(cards: &[Value], costs: &Value) -> HashMap<String, Rollup> {
    let mut own: HashMap<String, Rollup> = HashMap::new();
    for r in costs["by_agent"].as_array().into_iter().flatten() {
        let Some(name) = r["key"].as_str() else {
            continue;
        };
        let o = own.entry(name.to_string()).or_default();
        o.cost += (r["cost_usd"].as_str())
            .and_then(|c| c.parse::<Decimal>().ok())
            .unwrap_or_default();
        // Saturating: the counts are an upstream's, which may be nonsense.
        let tokens = ["input_tokens", "output_tokens"].map(|k| r[k].as_u64().unwrap_or(0));
        o.tokens = o.tokens.saturating_add(tokens[0]).saturating_add(tokens[1]);
    }
    for c in cards {
        let (Some(agent), Some(state)) = (c["agent"].as_str(), c["state"].as_str()) else {
            continue;
        };
        let o = own.entry(agent.to_string()).or_default();
        *o.jobs.entry(state.to_string()).or_default() += 1;
    }
    own
}

/// An agent's `name` in its JSON.
pub fn agent_name(a: &Value) -> &str {
    a["name"].as_str().unwrap_or_default()
}

/// An agent's `parent` in its JSON.
pub fn agent_parent(a: &Value) -> Option<&str> {
    a["parent"].as_str()
}

/// The agent tree with roll-ups, from the dashboard's agents, kanban cards and costs.
pub fn rolled_up(agents: &[Value], cards: &[Value], costs: &Value) -> Vec<Node> {
    let own = own(cards, costs);
    fn node(b: &Branch<&Value>, own: &HashMap<String, Rollup>) -> Node {
        let name = b.item["name"].as_str().unwrap_or_default();
        let mine = own.get(name).cloned().unwrap_or_default();
        let mut subtree = mine.clone();
        let children: Vec<Node> = b.children.iter().map(|c| node(c, own)).collect();
        for c in &children {
            subtree.add(&c.subtree);
        }
        Node {
            agent: b.item.clone(),
            own: mine,
            subtree,
            children,
        }
    }
    (forest(agents, agent_name, agent_parent).iter())
        .map(|b| node(b, &own))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn roots_children_and_cycles_each_appear_once_with_their_sums() {
        let agents = [
            json!({"name": "boss", "parent": null}),
            json!({"name": "w1", "parent": "boss"}),
            json!({"name": "w2", "parent": "w1"}),
            json!({"name": "orphan", "parent": "gone"}),
            json!({"name": "x", "parent": "y"}),
            json!({"name": "y", "parent": "x"}),
        ];
        let order: Vec<(usize, &str)> = indented(&forest(&agents, agent_name, agent_parent))
            .into_iter()
            .map(|(d, a)| (d, agent_name(a)))
            .collect();
        assert_eq!(
            order,
            [
                (0, "boss"),
                (1, "w1"),
                (2, "w2"),
                (0, "orphan"),
                (0, "x"),
                (1, "y")
            ]
        );
        let cards = [
            json!({"agent": "w2", "state": "done"}),
            json!({"agent": "w1", "state": "assigned"}),
        ];
        let costs = json!({"by_agent": [
            {"key": "w2", "cost_usd": "0.25", "input_tokens": 10, "output_tokens": 5},
            {"key": "boss", "cost_usd": "1", "input_tokens": 1, "output_tokens": 1}]});
        let tree = crate::views::value(&rolled_up(&agents, &cards, &costs));
        assert_eq!(tree[0]["name"], "boss");
        assert_eq!(
            tree[0]["subtree"],
            json!({"cost_usd": "1.25", "tokens": 17, "jobs": {"assigned": 1, "done": 1}})
        );
        assert_eq!(
            tree[0]["own"],
            json!({"cost_usd": "1", "tokens": 2, "jobs": {}})
        );
        assert_eq!(tree[0]["children"][0]["children"][0]["name"], "w2");
        assert_eq!(tree.as_array().unwrap().len(), 3);
    }
}
