//! Drawing a flow graph, or a finished run colored by state, as Graphviz DOT, Mermaid or a
//! standalone SVG picture (feature `viz`: laid out in pure Rust, no Graphviz needed).
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
//!
//! // The same pictures as SVG (feature `viz`), e.g. to save as `chain.svg` or to embed in a web page.
//! let svg = chain::graph().to_svg();
//! assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\"") && svg.contains(">b</text>"));
//! assert!(run.to_svg().contains(&format!("fill=\"{green}\"")));
//! # }
//! ```

use crate::flow::FlowRun;
use crate::graph::{EdgeKind, FlowGraph, NodeKind};
use crate::state::StateKind;
use std::collections::HashMap;
use std::fmt::Write;

#[cfg(feature = "viz")]
mod svg;

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
        Scheduled | Late | Pending | Running | Retrying => "#ffc107",
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
        self.to_dot_with_states(&HashMap::new())
    }

    /// Mermaid `flowchart` of the task nodes (`n<id>`) and the edges between them (ordering and
    /// glue edges dotted).
    pub fn to_mermaid(&self) -> String {
        self.to_mermaid_with_states(&HashMap::new())
    }

    /// DOT like [`FlowGraph::to_dot`], each task whose id is in `states` filled with
    /// [`state_color`] of its state (and the state as tooltip): for states that come from
    /// elsewhere than a [`FlowRun`] in memory, e.g. a run read back from a database.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use weft::prelude::*;
    ///
    /// #[task] async fn a() -> u32 { 1 }
    ///
    /// #[flow]
    /// async fn one() -> u32 {
    ///     let x = a()?;
    ///     x
    /// }
    ///
    /// let g = one::graph();
    /// let states = HashMap::from([(g.node("a").unwrap().id, StateKind::Failed)]);
    /// assert!(g.to_dot_with_states(&states).contains("fillcolor=\"#dc3545\", tooltip=\"Failed\""));
    /// ```
    pub fn to_dot_with_states(&self, states: &HashMap<u32, StateKind>) -> String {
        let mut out = format!("digraph \"{}\" {{\n    rankdir=TB;\n", esc(&self.name));
        for n in self.task_nodes() {
            let shape = match n.kind {
                NodeKind::Map => "box3d",
                // A subflow: a box with side bars, as flowcharts draw a subroutine.
                NodeKind::Flow => "component",
                _ => "box",
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

    /// Mermaid like [`FlowGraph::to_mermaid`], with a `style n<id> fill:..` line for each task
    /// whose id is in `states` (colors from [`state_color`]).
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use weft::prelude::*;
    ///
    /// #[task] async fn a() -> u32 { 1 }
    ///
    /// #[flow]
    /// async fn one() -> u32 {
    ///     let x = a()?;
    ///     x
    /// }
    ///
    /// let g = one::graph();
    /// let states = HashMap::from([(g.node("a").unwrap().id, StateKind::Cached)]);
    /// assert!(g.to_mermaid_with_states(&states).contains("style n0 fill:#1f77b4"));
    /// ```
    pub fn to_mermaid_with_states(&self, states: &HashMap<u32, StateKind>) -> String {
        let mut out = String::from("flowchart TD\n");
        for n in self.task_nodes() {
            let label = n.label().replace('"', "#quot;");
            if n.kind == NodeKind::Flow {
                let _ = writeln!(out, "    n{}[[\"{label}\"]]", n.id);
            } else {
                let _ = writeln!(out, "    n{}[\"{label}\"]", n.id);
            }
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
    /// (Prefect's `flow.visualize(flow_state)`).
    pub fn to_dot(&self) -> String {
        self.graph.to_dot_with_states(&self.node_states())
    }

    /// Mermaid of the flow graph colored by final state (a `style n<id> fill:..` line per task
    /// that ran or was marked).
    pub fn to_mermaid(&self) -> String {
        self.graph.to_mermaid_with_states(&self.node_states())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Edge, Node};

    pub(super) const ESCAPED: &str = "c <&> \"q\"";

    /// The diamond a -> b, a -> c, b -> d, c -> d (c -> d through glue), an order edge a -> d, and
    /// a glue node e after d; b is mapped and c's label needs escaping.
    pub(super) fn diamond() -> FlowGraph {
        let node = |id: u32, kind: NodeKind, task: &'static str| Node {
            id,
            kind,
            task: task.into(),
            binding: Some(format!("v{id}").into()),
            statement: if task.is_empty() {
                "println!(\"{v3}\")".into()
            } else {
                "".into()
            },
            line: 0,
        };
        let edge = |from, to, kind| Edge {
            from,
            to,
            kind,
            binding: (kind != EdgeKind::Order).then(|| format!("v{from}").into()),
        };
        FlowGraph {
            name: "diamond".into(),
            nodes: vec![
                node(0, NodeKind::Task, "a"),
                node(1, NodeKind::Map, "b"),
                node(2, NodeKind::Task, ESCAPED),
                node(3, NodeKind::Task, "d"),
                node(4, NodeKind::Glue, ""),
            ]
            .into(),
            edges: vec![
                edge(0, 1, EdgeKind::Data),
                edge(0, 2, EdgeKind::Data),
                edge(1, 3, EdgeKind::Data),
                edge(2, 3, EdgeKind::Glue),
                edge(0, 3, EdgeKind::Order),
                edge(3, 4, EdgeKind::Data),
            ]
            .into(),
        }
    }

    pub(super) fn states() -> HashMap<u32, StateKind> {
        HashMap::from([
            (0, StateKind::Completed),
            (1, StateKind::Failed),
            (2, StateKind::Running),
        ])
    }

    #[test]
    fn named_renderers_match_the_plain_ones() {
        let g = diamond();
        let none = HashMap::new();
        assert_eq!(g.to_dot(), g.to_dot_with_states(&none));
        assert_eq!(g.to_mermaid(), g.to_mermaid_with_states(&none));
        let dot = g.to_dot_with_states(&states());
        assert!(dot.contains("fillcolor=\"#dc3545\", tooltip=\"Failed\""));
        assert!(dot.contains("\"a\" -> \"d\" [style=dashed]"));
    }
}
