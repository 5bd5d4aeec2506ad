//! The executor: the one place that carries out what the deciding code asked for
//! (`effect.rs`), with the file system, git, the database and the event hub.

use chrono::{DateTime, Utc};

use super::effect::Effect;
use super::engine::Engine;
use crate::events::{Breach, Event};

impl Engine {
    /// Carries out `effects`, decided at `now`, in order.
    pub(super) fn exec(&mut self, effects: Vec<Effect>, now: DateTime<Utc>) {
        for fx in effects {
            match fx {
                Effect::Emit(e) => self.emit(e),
                Effect::Replan => self.replan = true,
                Effect::Breach { tokens, save_state } => {
                    let card = if save_state {
                        self.drop_save_state(&tokens.agent, tokens.ctx_ratio)
                    } else {
                        None
                    };
                    self.emit(Event::TokenBreach(Breach { tokens, card }));
                }
                Effect::Expire { agent, last_seen } => self.expire(&agent, last_seen),
                Effect::TakeBack { id, reason } => self.take_back(&id, &reason, now),
                Effect::Fail { id, reason } => self.fail(&id, &reason, now),
                Effect::Assign { id, agent } => self.assign(&id, &agent, now),
                Effect::Waiting { id, reason } => self.note_waiting(&id, reason),
                Effect::RunLlm { id } => self.start_llm(&id),
            }
        }
    }
}
