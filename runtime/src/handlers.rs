//! Calling state handlers: each sees the state proposed so far and may replace it; a panicking
//! handler is logged and skipped, never fatal.

use crate::state::{State, StateChange, StateHandler};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `handlers` in order on `change` and returns the new state they settle on.
pub(crate) fn apply(handlers: &[StateHandler], mut change: StateChange) -> State {
    for handler in handlers {
        match catch_unwind(AssertUnwindSafe(|| handler(&change))) {
            Ok(Some(replacement)) => change.new = replacement,
            Ok(None) => {}
            Err(panic) => tracing::error!(
                target: "weft",
                "State handler of '{}' panicked on {} -> {}: {}; keeping '{}'",
                change.name,
                change.old.kind,
                change.new.kind,
                crate::engine::panic_message(&*panic),
                change.new.kind
            ),
        }
    }
    change.new
}

/// Runs `handlers` on a change into a final state: a replacement that is not final itself
/// (Running, Pending, Retrying, Scheduled) would leave the run recorded unfinished forever, so
/// it is refused with a warning and the proposed final state kept.
pub(crate) fn apply_final(handlers: &[StateHandler], change: StateChange) -> State {
    let proposed = change.new.clone();
    let (kind, name) = (change.kind, change.name);
    let new = apply(handlers, change);
    if new.is_final() {
        return new;
    }
    let what = match kind {
        crate::state::RunKind::Task => "Task",
        crate::state::RunKind::Flow => "Flow run",
    };
    tracing::warn!(
        target: "weft",
        "{what} '{name}': a state handler replaced the final state '{}' with '{}', which is not final; keeping '{}'",
        proposed.kind,
        new.kind,
        proposed.kind
    );
    proposed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{RunKind, StateKind};

    fn change() -> StateChange {
        StateChange {
            kind: RunKind::Task,
            name: "t",
            flow_run_id: uuid::Uuid::nil(),
            task_run_id: None,
            old: State::of(StateKind::Running),
            new: State::failed("boom"),
        }
    }

    #[test]
    fn handlers_chain_and_panics_are_contained() {
        fn to_cancelled(c: &StateChange) -> Option<State> {
            c.new
                .is_failed()
                .then(|| State::cancelled("stopped by handler"))
        }
        fn explodes(_: &StateChange) -> Option<State> {
            panic!("handler bug")
        }
        fn sees_cancelled(c: &StateChange) -> Option<State> {
            assert_eq!(c.new.kind, StateKind::Cancelled);
            None
        }
        let out = apply(&[to_cancelled, explodes, sees_cancelled], change());
        assert_eq!(out.kind, StateKind::Cancelled);
        assert_eq!(out.message.as_deref(), Some("stopped by handler"));
    }

    #[test]
    fn a_final_state_is_not_replaced_by_an_unfinished_one() {
        fn back_to_running(_: &StateChange) -> Option<State> {
            Some(State::of(StateKind::Running))
        }
        fn to_cancelled(_: &StateChange) -> Option<State> {
            Some(State::cancelled("by handler"))
        }
        assert_eq!(
            apply_final(&[back_to_running], change()).kind,
            StateKind::Failed
        );
        assert_eq!(
            apply_final(&[to_cancelled], change()).kind,
            StateKind::Cancelled
        );
    }
}
