//! Drawing a flow graph, or a finished run colored by state, as Graphviz DOT or Mermaid.
//! Task nodes are drawn; glue statements are folded into `glue` edges.
//!
//! ```
//! use weft::prelude::*;
//! use weft::viz::state_color;
//!
//! #[task] async fn a() -> u32 { 1 }
//! #[task] async fn b(x: u32) -> u32 { x + 1 }
//!
//! #[flow]
//! async fn chain() -> u32 {
//!     let x = a()?;
//!     let y = b(x)?;
//!     y
//! }
//!
//! # #[tokio::main] async fn main() {
//! let plan = chain::graph().to_mermaid(); // before anything runs
//! assert!(plan.starts_with("flowchart TD") && plan.contains("n0 --> n1"));
//! let run = chain().await; // after: each task filled with its final state's color
//! let green = state_color(StateKind::Completed);
//! assert!(run.to_mermaid().contains(&format!("style n1 fill:{green}")));
//! assert!(run.to_dot().contains(&format!("fillcolor=\"{green}\"")));
//! # }
//! ```

use crate::flow::FlowRun;
use crate::graph::{EdgeKind, FlowGraph, NodeKind};
use crate::state::StateKind;
use std::collections::HashMap;
use std::fmt::Write;

/// Fill color of a state: green done, red failed, yellow in progress, blue cached, grey not run.
///
/// ```
/// use weft::prelude::*;
/// use weft::viz::state_color;
///
/// assert_eq!(state_color(StateKind::Completed), "#28a745");
/// assert_eq!(state_color(StateKind::TimedOut), state_color(StateKind::Failed));
/// ```
pub fn state_color(kind: StateKind) -> &'static str {
    use StateKind::*;
    match kind {
        Completed => "#28a745",
        Cached => "#1f77b4",
        Failed | Crashed | TimedOut => "#dc3545",
        Scheduled | Pending | Running | Retrying => "#ffc107",
        Cancelled | Skipped | NotRun => "#adb5bd",
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl FlowGraph {
    /// Graphviz DOT of the task nodes and the edges between them: data edges solid and labelled
    /// with their binding, `#[wait_for]` edges dashed, edges through glue dotted.
    pub fn to_dot(&self) -> String {
        self.dot_with(&HashMap::new())
    }

    /// Mermaid `flowchart` of the task nodes (`n<id>`) and the edges between them (ordering and
    /// glue edges dotted).
    pub fn to_mermaid(&self) -> String {
        self.mermaid_with(&HashMap::new())
    }

    fn dot_with(&self, states: &HashMap<u32, StateKind>) -> String {
        let mut out = format!("digraph \"{}\" {{\n    rankdir=TB;\n", esc(&self.name));
        for n in self.task_nodes() {
            let shape = if n.kind == NodeKind::Map {
                "box3d"
            } else {
                "box"
            };
            let _ = write!(out, "    \"{}\" [shape={shape}", esc(n.label()));
            if let Some(k) = states.get(&n.id) {
                let _ = write!(
                    out,
                    ", style=filled, fillcolor=\"{}\", tooltip=\"{k}\"",
                    state_color(*k)
                );
            }
            out.push_str("];\n");
        }
        for e in self.edges.iter() {
            let (from, to) = (&self.nodes[e.from as usize], &self.nodes[e.to as usize]);
            if from.kind == NodeKind::Glue || to.kind == NodeKind::Glue {
                continue;
            }
            let _ = write!(
                out,
                "    \"{}\" -> \"{}\"",
                esc(from.label()),
                esc(to.label())
            );
            let style = match e.kind {
                EdgeKind::Data => None,
                EdgeKind::Order => Some("dashed"),
                EdgeKind::Glue => Some("dotted"),
            };
            match (style, &e.binding) {
                (Some(s), Some(b)) => {
                    let _ = write!(out, " [style={s}, label=\"{}\"]", esc(b));
                }
                (Some(s), None) => {
                    let _ = write!(out, " [style={s}]");
                }
                (None, Some(b)) => {
                    let _ = write!(out, " [label=\"{}\"]", esc(b));
                }
                (None, None) => {}
            }
            out.push_str(";\n");
        }
        out.push_str("}\n");
        out
    }

    fn mermaid_with(&self, states: &HashMap<u32, StateKind>) -> String {
        let mut out = String::from("flowchart TD\n");
        for n in self.task_nodes() {
            let label = n.label().replace('"', "#quot;");
            let _ = writeln!(out, "    n{}[\"{label}\"]", n.id);
            if let Some(k) = states.get(&n.id) {
                let _ = writeln!(out, "    style n{} fill:{}", n.id, state_color(*k));
            }
        }
        for e in self.edges.iter() {
            let (from, to) = (&self.nodes[e.from as usize], &self.nodes[e.to as usize]);
            if from.kind == NodeKind::Glue || to.kind == NodeKind::Glue {
                continue;
            }
            let arrow = match e.kind {
                EdgeKind::Data => "-->",
                EdgeKind::Order | EdgeKind::Glue => "-.->",
            };
            let _ = writeln!(out, "    n{} {arrow} n{}", e.from, e.to);
        }
        out
    }
}

impl<R> FlowRun<R> {
    fn node_states(&self) -> HashMap<u32, StateKind> {
        // A mapped node takes its summary state (map_index None) when present.
        let mut states = HashMap::new();
        for r in &self.task_runs {
            if r.id.map_index.is_none() || !states.contains_key(&r.id.node) {
                states.insert(r.id.node, r.state.kind);
            }
        }
        states
    }

    /// DOT of the flow graph, each task filled with the color of its final state
    /// (seed 004's `flow.visualize(flow_state)`).
    pub fn to_dot(&self) -> String {
        self.graph.dot_with(&self.node_states())
    }

    /// Mermaid of the flow graph colored by final state (a `style n<id> fill:..` line per task
    /// that ran or was marked).
    pub fn to_mermaid(&self) -> String {
        self.graph.mermaid_with(&self.node_states())
    }
}
