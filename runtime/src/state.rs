//! States of task runs and flow runs, in Prefect's vocabulary.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a run is doing, or how it ended.
///
/// ```
/// use weft::prelude::*;
/// assert!(StateKind::Cached.is_successful());
/// assert!(StateKind::Crashed.is_failed());
/// assert!(!StateKind::Retrying.is_final());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StateKind {
    /// Known to the engine, waiting for a time to start.
    Scheduled,
    /// A scheduled flow run that no worker started within the late threshold after its time
    /// (Prefect's Late): still waiting for a worker.
    Late,
    /// Waiting for its upstream tasks.
    Pending,
    /// Its body is executing.
    Running,
    /// An attempt failed and another one is coming.
    Retrying,
    /// Finished with a value.
    Completed,
    /// Finished with a value that was not computed again.
    Cached,
    /// Finished with an error, or asked to fail.
    Failed,
    /// The body panicked.
    Crashed,
    /// The body overran its timeout.
    TimedOut,
    /// Stopped from outside (fail_fast, a handler, shutdown).
    Cancelled,
    /// The task asked to be skipped; its data dependents are skipped too.
    Skipped,
    /// Never started because an upstream task did not succeed.
    NotRun,
}

impl StateKind {
    /// A state the run will not leave.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            StateKind::Scheduled
                | StateKind::Late
                | StateKind::Pending
                | StateKind::Running
                | StateKind::Retrying
        )
    }

    /// Completed or Cached: the run produced its value.
    pub fn is_successful(self) -> bool {
        matches!(self, StateKind::Completed | StateKind::Cached)
    }

    /// Failed, Crashed or TimedOut: the run ended in an error.
    pub fn is_failed(self) -> bool {
        matches!(
            self,
            StateKind::Failed | StateKind::Crashed | StateKind::TimedOut
        )
    }

    /// The name users see in logs, e.g. `Completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Scheduled => "Scheduled",
            StateKind::Late => "Late",
            StateKind::Pending => "Pending",
            StateKind::Running => "Running",
            StateKind::Retrying => "Retrying",
            StateKind::Completed => "Completed",
            StateKind::Cached => "Cached",
            StateKind::Failed => "Failed",
            StateKind::Crashed => "Crashed",
            StateKind::TimedOut => "TimedOut",
            StateKind::Cancelled => "Cancelled",
            StateKind::Skipped => "Skipped",
            StateKind::NotRun => "NotRun",
        }
    }
}

impl StateKind {
    /// Every state, in the order a run may go through them.
    pub const ALL: [StateKind; 13] = [
        StateKind::Scheduled,
        StateKind::Late,
        StateKind::Pending,
        StateKind::Running,
        StateKind::Retrying,
        StateKind::Completed,
        StateKind::Cached,
        StateKind::Failed,
        StateKind::Crashed,
        StateKind::TimedOut,
        StateKind::Cancelled,
        StateKind::Skipped,
        StateKind::NotRun,
    ];
}

/// Parses a state's name, ignoring case and `_`/`-` (`failed`, `Completed`, `not_run`,
/// `timed-out`).
///
/// ```
/// use weft::prelude::*;
/// assert_eq!("failed".parse::<StateKind>(), Ok(StateKind::Failed));
/// assert_eq!("not_run".parse::<StateKind>(), Ok(StateKind::NotRun));
/// assert!("done".parse::<StateKind>().unwrap_err().contains("Completed"));
/// ```
impl std::str::FromStr for StateKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let wanted: String = s
            .chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect();
        StateKind::ALL
            .into_iter()
            .find(|k| k.as_str().to_lowercase() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = StateKind::ALL.iter().map(|k| k.as_str()).collect();
                format!("unknown state {s:?}; expected one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A timestamped state with an optional message.
///
/// ```
/// use weft::prelude::*;
/// let s = State::failed("Server not available. Status code: 503");
/// assert!(s.is_failed());
/// assert_eq!(s.to_string(), "Failed('Server not available. Status code: 503')");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Which state.
    pub kind: StateKind,
    /// Why, in words (the error of a Failed run, the reason of a Skipped one).
    pub message: Option<String>,
    /// When the run entered this state.
    pub timestamp: DateTime<Utc>,
}

macro_rules! constructors {
    ($($fn_name:ident => $kind:ident),* $(,)?) => {$(
        #[doc = concat!("A `", stringify!($kind), "` state stamped now, with a message.")]
        pub fn $fn_name(message: impl Into<String>) -> State {
            State::new(StateKind::$kind, Some(message.into()))
        }
    )*};
}

impl State {
    /// A state of `kind` stamped now.
    pub fn new(kind: StateKind, message: Option<String>) -> State {
        State {
            kind,
            message,
            timestamp: Utc::now(),
        }
    }

    /// A state of `kind` stamped now, without a message.
    pub fn of(kind: StateKind) -> State {
        State::new(kind, None)
    }

    constructors! {
        completed => Completed,
        failed => Failed,
        crashed => Crashed,
        timed_out => TimedOut,
        cancelled => Cancelled,
        skipped => Skipped,
        not_run => NotRun,
        retrying => Retrying,
    }

    /// See [`StateKind::is_final`].
    pub fn is_final(&self) -> bool {
        self.kind.is_final()
    }
    /// See [`StateKind::is_successful`].
    pub fn is_successful(&self) -> bool {
        self.kind.is_successful()
    }
    /// See [`StateKind::is_failed`].
    pub fn is_failed(&self) -> bool {
        self.kind.is_failed()
    }
    /// True for `Skipped`.
    pub fn is_skipped(&self) -> bool {
        self.kind == StateKind::Skipped
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{}('{}')", self.kind, m),
            None => write!(f, "{}()", self.kind),
        }
    }
}

/// Who a state change belongs to: a task run or a flow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunKind {
    /// A task run (one element of a mapped task is one task run).
    Task,
    /// A flow run.
    Flow,
}

/// What a state handler receives: whose state changed, from what, to what.
///
/// ```
/// use weft::prelude::*;
/// fn alert_failed(change: &StateChange) -> Option<State> {
///     if change.new.is_failed() {
///         println!("Failed!");
///     }
///     None // keep the new state
/// }
/// # let _ = alert_failed;
/// ```
#[derive(Debug, Clone)]
pub struct StateChange {
    /// Task run or flow run.
    pub kind: RunKind,
    /// The task's or the flow's name.
    pub name: &'static str,
    /// The flow run this change belongs to.
    pub flow_run_id: uuid::Uuid,
    /// The task run, for task changes.
    pub task_run_id: Option<TaskRunId>,
    /// The state being left.
    pub old: State,
    /// The state being entered.
    pub new: State,
}

/// Identifies one task run: its flow run, its node in the flow graph and, for an element of a mapped
/// task, its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRunId {
    /// The flow run.
    pub flow_run_id: uuid::Uuid,
    /// Index of the node in the flow graph.
    pub node: u32,
    /// Index of the element, for a mapped task.
    pub map_index: Option<u32>,
}

impl fmt::Display for TaskRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.flow_run_id.simple(), self.node)?;
        if let Some(i) = self.map_index {
            write!(f, "-{i}")?;
        }
        Ok(())
    }
}

/// A state handler: sees each state change of a task or flow run and may replace the new state by
/// returning `Some`. Attach handlers with `#[task(state_handlers = [f, g])]` or
/// `#[flow(state_handlers = [f])]`; see [`StateChange`] for an example.
pub type StateHandler = fn(&StateChange) -> Option<State>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_and_successful_sets() {
        use StateKind::*;
        let all = StateKind::ALL;
        let finals: Vec<_> = all.iter().filter(|k| k.is_final()).collect();
        assert_eq!(finals.len(), 8);
        let ok: Vec<_> = all.iter().filter(|k| k.is_successful()).collect();
        assert_eq!(ok, [&Completed, &Cached]);
    }

    #[test]
    fn state_round_trips_through_json() {
        let s = State::skipped("nothing to do");
        let json = serde_json::to_string(&s).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(json.contains("\"Skipped\""));
    }
}
