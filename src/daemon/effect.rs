//! The daemon's sans-IO seam: what its deciding code is told ([`Input`]) and what it asks
//! for ([`Effect`]), in the manner of `quinn-proto`: `Engine::handle` takes an input and
//! the time and returns effects without touching a file, git or the database; the one
//! executor (`exec.rs`) carries them out. Timers are the decider's own state, asked for
//! with `next_liveness_check` (like quinn's `poll_timeout`), not effects.
//!
//! Liveness and the token governor (see `ttl.rs`) and the plan's assignments,
//! take-backs and failures (the board decides them, `board::plan_incremental`) go through
//! it so far; reconcile and recovery still decide and act in one place and are moved over
//! the same way.

use chrono::{DateTime, Utc};

use super::engine::Engine;
use crate::events::{Event, Tokens};
use crate::heartbeat::Beat;

/// An observation the engine decides on.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// An agent's newest beat, as read from its heartbeat file.
    Beat { agent: String, beat: Beat },
    /// Time has passed: give the verdicts that are due.
    Tick,
    /// The board changed or a card's deadline passed: plan.
    Plan,
}

/// What a decision asks the executor to do; a closed set.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish an event.
    Emit(Event),
    /// Something that placement depends on changed: plan again.
    Replan,
    /// An agent's context is at or over hard_max: drop it a save-state card when
    /// `save_state` (the first breach since it was last below target), then publish
    /// `token.breach` naming the card.
    Breach { tokens: Tokens, save_state: bool },
    /// No beat for three intervals: remove the registration, take its cards back and
    /// publish `agent.deregistered`.
    Expire {
        agent: String,
        last_seen: DateTime<Utc>,
    },
    /// Take card `id` back from its agent: to the inbox, or to `failed/` past its
    /// attempts.
    TakeBack { id: String, reason: String },
    /// Fail inbox card `id` at once (it can never run here).
    Fail { id: String, reason: String },
    /// Move inbox card `id` to `agent`.
    Assign { id: String, agent: String },
    /// Say in the card why it waits.
    Waiting { id: String, reason: String },
    /// Hand LLM job card `id` to the gateway's executor.
    RunLlm { id: String },
}

impl Effect {
    /// Whether this frees room another pass of the plan may use.
    pub fn frees_room(&self) -> bool {
        matches!(self, Effect::TakeBack { .. })
    }
}

/// A plan as effects, in the order they are carried out: take-backs first (they free
/// room), then failures, assignments, waiting reasons, and LLM calls.
fn plan_effects(plan: crate::board::Plan) -> Vec<Effect> {
    let mut fx = Vec::new();
    fx.extend((plan.take_back.into_iter()).map(|(id, reason)| Effect::TakeBack { id, reason }));
    fx.extend((plan.fail.into_iter()).map(|(id, reason)| Effect::Fail { id, reason }));
    fx.extend((plan.assign.into_iter()).map(|(id, agent)| Effect::Assign { id, agent }));
    fx.extend((plan.waiting.into_iter()).map(|(id, reason)| Effect::Waiting { id, reason }));
    fx.extend(plan.llm.into_iter().map(|id| Effect::RunLlm { id }));
    fx
}

impl Engine {
    /// Decides on `input` at `now`: the engine's deciding state changes, and what must be
    /// done outside it comes back as effects (nothing here reads or writes a file).
    pub fn handle(&mut self, input: Input, now: DateTime<Utc>) -> Vec<Effect> {
        let interval = self.cfg.heartbeat_interval_s;
        match input {
            Input::Beat { agent, beat } => {
                let Some(a) = self.board.agents.get_mut(&agent) else {
                    return Vec::new();
                };
                let budget = &self.cfg.token_budget;
                super::ttl::beat(a, beat, now, interval, budget, &mut self.live.governor)
            }
            Input::Tick => {
                if self.live.next_check.is_some_and(|t| t > now) {
                    return Vec::new();
                }
                let agents = self.board.agents.values_mut();
                let (fx, next) = super::ttl::sweep(agents, now, self.live.started, interval);
                self.live.next_check = next;
                fx
            }
            Input::Plan => {
                let plan = self.board.plan_incremental(now);
                self.check_plan(&plan, now);
                plan_effects(plan)
            }
        }
    }
}
