//! The flow graph: nodes (statements of a flow body), edges (data and ordering) and checks on it.
//! `#[flow]` emits one as a `static`; other front doors can build one at run time.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// What a node of the graph is.
///
/// ```
/// use weft::prelude::*;
/// use weft::NodeKind;
///
/// #[task] async fn square(x: u64) -> u64 { x * x }
/// #[task] fn sum(xs: Vec<u64>) -> u64 { xs.iter().sum() }
///
/// #[flow]
/// async fn squares(n: u64) -> u64 {
///     let sq = square::map(0..n)?;
///     let s = sum(sq)?;
///     println!("total: {s}");
///     s
/// }
///
/// let kinds: Vec<NodeKind> = squares::graph().nodes.iter().map(|n| n.kind).collect();
/// assert_eq!(&kinds[..2], [NodeKind::Map, NodeKind::Task]);
/// assert!(kinds[2..].iter().all(|k| *k == NodeKind::Glue)); // the `println!` and the tail
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeKind {
    /// A call of a `#[task]`: one task run.
    Task,
    /// A task mapped over a list (`task::map(..)`): one task run per element.
    Map,
    /// Plain Rust in the flow body; runs in written order when the values it reads are ready.
    Glue,
    /// A call of another `#[flow]`: a child flow run (a subflow) with its own run id.
    Flow,
}

/// How one node depends on another.
///
/// ```
/// use weft::prelude::*;
/// use weft::EdgeKind;
///
/// #[task] async fn create_table() {}
/// #[task] async fn extract() -> Vec<u32> { vec![1, 2] }
/// #[task] async fn load(rows: Vec<u32>) -> usize { rows.len() }
///
/// #[flow]
/// async fn etl() -> usize {
///     let table = create_table();
///     let rows = extract()?;
///     #[wait_for(table)]
///     let n = load(rows)?;
///     n
/// }
///
/// let g = etl::graph();
/// let id = |name: &str| g.node(name).unwrap().id; // by binding or by task name
/// let kind = |from, to| g.edges.iter().find(|e| (e.from, e.to) == (from, to)).map(|e| e.kind);
/// assert_eq!(kind(id("rows"), id("n")), Some(EdgeKind::Data));
/// assert_eq!(kind(id("table"), id("load")), Some(EdgeKind::Order));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EdgeKind {
    /// The task's output is an argument of the dependent.
    Data,
    /// Ordering without data (`#[wait_for(x)]`, Prefect's `upstream_tasks`).
    Order,
    /// The output reaches the dependent through glue code (e.g. `let n = rows.len();`).
    Glue,
}

/// A node: one statement of the flow body.
///
/// ```
/// use weft::prelude::*;
///
/// #[task(name = "fetch rows")]
/// async fn extract() -> Vec<u32> { vec![1, 2, 3] }
///
/// #[flow]
/// async fn count() -> usize {
///     let raw = extract()?;
///     raw.len()
/// }
///
/// let g = count::graph();
/// let node = g.node("raw").unwrap(); // by binding or by task name
/// assert_eq!((node.id, node.task.as_ref(), node.label()), (0, "fetch rows", "fetch rows"));
/// assert_eq!(node.binding.as_deref(), Some("raw"));
/// assert!(node.statement.contains("extract()?") && node.line > 0);
/// let glue = &g.nodes[1]; // the tail `raw.len()`
/// assert_eq!((glue.task.as_ref(), glue.label()), ("", "raw.len()"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Index in [`FlowGraph::nodes`].
    pub id: u32,
    /// Task, mapped task or glue.
    pub kind: NodeKind,
    /// The task's name (empty for glue).
    pub task: Cow<'static, str>,
    /// The name the statement binds, if any (`raw` in `let raw = extract()?;`).
    pub binding: Option<Cow<'static, str>>,
    /// The statement's source text.
    pub statement: Cow<'static, str>,
    /// Line of the statement in its source file (0 when unknown).
    pub line: u32,
}

impl Node {
    /// The task name, borrowed for as long as the graph lives.
    #[doc(hidden)]
    pub fn task_static(&'static self) -> &'static str {
        &self.task
    }

    /// The label drawn for this node: the task name, or the statement for glue.
    pub fn label(&self) -> &str {
        if self.task.is_empty() {
            &self.statement
        } else {
            &self.task
        }
    }
}

/// An edge `from -> to`: node ids in [`FlowGraph::nodes`].
///
/// ```
/// use weft::prelude::*;
///
/// #[task] async fn a() -> u32 { 1 }
/// #[task] async fn b(x: u32) -> u32 { x + 1 }
///
/// #[flow]
/// async fn chain() -> u32 {
///     let x = a()?;
///     let y = b(x)?;
///     y
/// }
///
/// let g = chain::graph();
/// for e in g.edges.iter() {
///     let (from, to) = (&g.nodes[e.from as usize], &g.nodes[e.to as usize]);
///     println!("{} -> {} ({:?})", from.label(), to.label(), e.kind);
/// }
/// let (a, b) = (g.node("a").unwrap().id, g.node("b").unwrap().id);
/// let e = g.edges.iter().find(|e| e.from == a).unwrap();
/// assert_eq!((e.to, e.binding.as_deref()), (b, Some("x")));
/// assert_eq!(g.upstream(b).collect::<Vec<_>>(), [a]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Upstream node id.
    pub from: u32,
    /// Downstream node id.
    pub to: u32,
    /// Data, ordering, or data through glue.
    pub kind: EdgeKind,
    /// The binding carried, if any.
    pub binding: Option<Cow<'static, str>>,
}

/// A flow's dependency graph.
///
/// ```
/// use weft::prelude::*;
///
/// #[task] fn a() -> u32 { 1 }
/// #[task] fn b(x: u32) -> u32 { x + 1 }
///
/// #[flow]
/// async fn chain() -> u32 {
///     let x = a()?;
///     let y = b(x)?;
///     y
/// }
///
/// let g = chain::graph();
/// assert_eq!(g.task_nodes().count(), 2);
/// assert_eq!(g.topo_order().unwrap().len(), g.nodes.len());
/// assert!(g.to_dot().contains("\"a\" -> \"b\""));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowGraph {
    /// The flow's name.
    pub name: Cow<'static, str>,
    /// Every node, indexed by id.
    pub nodes: Cow<'static, [Node]>,
    /// Every edge.
    pub edges: Cow<'static, [Edge]>,
}

/// A cycle found in a graph, as the path of node labels that closes it. `#[flow]` never builds a
/// cyclic graph; a graph built by hand may be one.
///
/// ```
/// use weft::{Edge, EdgeKind, FlowGraph, Node, NodeKind};
///
/// let node = |id: u32, task: &'static str| Node {
///     id, kind: NodeKind::Task, task: task.into(), binding: None, statement: "".into(), line: 0,
/// };
/// let edge = |from, to| Edge { from, to, kind: EdgeKind::Order, binding: None };
/// let g = FlowGraph {
///     name: "loop".into(),
///     nodes: vec![node(0, "A"), node(1, "B")].into(),
///     edges: vec![edge(0, 1), edge(1, 0)].into(),
/// };
/// let err = g.topo_order().unwrap_err();
/// assert_eq!((err.path, err.display.as_str()), (vec![0, 1, 0], "A -> B -> A"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleError {
    /// Node ids along the cycle; the first is repeated at the end.
    pub path: Vec<u32>,
    /// The same path as labels, e.g. `A -> B -> C -> A`.
    pub display: String,
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the graph has a cycle: {}", self.display)
    }
}

impl std::error::Error for CycleError {}

impl FlowGraph {
    /// The nodes that run tasks (plain and mapped).
    pub fn task_nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.kind != NodeKind::Glue)
    }

    /// The node with this task name or binding.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.task == name || n.binding.as_deref() == Some(name))
    }

    /// Ids of the nodes `id` depends on directly.
    pub fn upstream(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        self.edges
            .iter()
            .filter(move |e| e.to == id)
            .map(|e| e.from)
    }

    /// Ids of the nodes that depend on `id` directly.
    pub fn downstream(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        self.edges
            .iter()
            .filter(move |e| e.from == id)
            .map(|e| e.to)
    }

    /// A topological order of the node ids (Kahn's algorithm, ties by id), or the first cycle.
    pub fn topo_order(&self) -> Result<Vec<u32>, CycleError> {
        let n = self.nodes.len();
        let mut indegree = vec![0usize; n];
        for e in self.edges.iter() {
            indegree[e.to as usize] += 1;
        }
        let mut ready: std::collections::BTreeSet<u32> = (0..n as u32)
            .filter(|&i| indegree[i as usize] == 0)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(id) = ready.pop_first() {
            order.push(id);
            for d in self.downstream(id) {
                indegree[d as usize] -= 1;
                if indegree[d as usize] == 0 {
                    ready.insert(d);
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            Err(self
                .find_cycle()
                .expect("Kahn's algorithm stalled, so a cycle exists"))
        }
    }

    /// The first cycle found by depth-first search, if any.
    pub fn find_cycle(&self) -> Option<CycleError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let n = self.nodes.len();
        let mut mark = vec![Mark::New; n];
        let mut path: Vec<u32> = Vec::new();
        for start in 0..n as u32 {
            if mark[start as usize] != Mark::New {
                continue;
            }
            // Iterative DFS: (node, next edge index to try).
            let mut stack: Vec<(u32, usize)> = vec![(start, 0)];
            mark[start as usize] = Mark::OnPath;
            path.push(start);
            while let Some((node, next)) = stack.last_mut() {
                let node = *node;
                let outs: Vec<u32> = self.downstream(node).collect();
                if *next < outs.len() {
                    let d = outs[*next];
                    *next += 1;
                    match mark[d as usize] {
                        Mark::OnPath => {
                            let from = path.iter().position(|&p| p == d).unwrap();
                            let mut cycle: Vec<u32> = path[from..].to_vec();
                            cycle.push(d);
                            let display = cycle
                                .iter()
                                .map(|&i| self.nodes[i as usize].label().to_owned())
                                .collect::<Vec<_>>()
                                .join(" -> ");
                            return Some(CycleError {
                                path: cycle,
                                display,
                            });
                        }
                        Mark::New => {
                            mark[d as usize] = Mark::OnPath;
                            path.push(d);
                            stack.push((d, 0));
                        }
                        Mark::Done => {}
                    }
                } else {
                    mark[node as usize] = Mark::Done;
                    path.pop();
                    stack.pop();
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: u32, edges: &[(u32, u32)]) -> FlowGraph {
        FlowGraph {
            name: "g".into(),
            nodes: (0..n)
                .map(|i| Node {
                    id: i,
                    kind: NodeKind::Task,
                    task: ["A", "B", "C", "D", "E"][i as usize].into(),
                    binding: None,
                    statement: "".into(),
                    line: 0,
                })
                .collect::<Vec<_>>()
                .into(),
            edges: edges
                .iter()
                .map(|&(from, to)| Edge {
                    from,
                    to,
                    kind: EdgeKind::Data,
                    binding: None,
                })
                .collect::<Vec<_>>()
                .into(),
        }
    }

    #[test]
    fn topo_order_respects_edges() {
        let g = graph(5, &[(3, 1), (1, 0), (4, 0)]);
        let order = g.topo_order().unwrap();
        let pos = |id: u32| order.iter().position(|&x| x == id).unwrap();
        assert!(pos(3) < pos(1) && pos(1) < pos(0) && pos(4) < pos(0));
        assert_eq!(order.len(), 5);
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let g = graph(4, &[(0, 1), (1, 2), (2, 0), (2, 3)]);
        let err = g.topo_order().unwrap_err();
        assert_eq!(err.display, "A -> B -> C -> A");
        assert_eq!(err.to_string(), "the graph has a cycle: A -> B -> C -> A");
        assert!(graph(2, &[(0, 1)]).find_cycle().is_none());
    }
}
