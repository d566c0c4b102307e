//! The SVG drawings (feature `viz`): a layered layout by layout-rs, in pure Rust.

use super::state_color;
use crate::flow::FlowRun;
use crate::graph::{EdgeKind, FlowGraph, NodeKind};
use crate::state::StateKind;
use layout::core::base::Orientation;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::collections::HashMap;
use std::fmt::Write;

// Sizes of the SVG drawing, in pixels.
const FONT_SIZE: f64 = 14.0;
/// Estimated advance of one character at `FONT_SIZE` in a sans-serif font (a little generous).
const CHAR_WIDTH: f64 = 8.0;
const BOX_PAD_X: f64 = 24.0;
const BOX_MIN_WIDTH: f64 = 60.0;
const BOX_HEIGHT: f64 = 36.0;
/// How far the second card of a mapped node's stack sticks out, right and down.
const STACK: f64 = 5.0;
const MARGIN: f64 = 12.0;
const STROKE: &str = "#343a40";

impl FlowGraph {
    /// A standalone SVG drawing of the task nodes, top to bottom along the edges, without states
    /// (every box white). See [`FlowGraph::to_svg_with_states`] for what is drawn.
    ///
    /// ```
    /// use weft::prelude::*;
    ///
    /// #[task] async fn extract() -> Vec<u32> { vec![1, 2] }
    /// #[task] async fn double(x: u32) -> u32 { 2 * x }
    ///
    /// #[flow]
    /// async fn etl() -> usize {
    ///     let rows = extract()?;
    ///     let doubled = double::map(rows)?;
    ///     doubled.len()
    /// }
    ///
    /// let svg = etl::graph().to_svg();
    /// assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    /// assert!(svg.contains(">extract</text>") && svg.contains("class=\"node map\""));
    /// std::fs::write(std::env::temp_dir().join("etl.svg"), &svg).unwrap();
    /// ```
    pub fn to_svg(&self) -> String {
        self.to_svg_with_states(&HashMap::new())
    }

    /// A standalone SVG drawing of the task nodes and the edges between them, each task whose id
    /// is in `states` filled with [`state_color`] of its state (white otherwise) with the state
    /// as tooltip (`<title>`).
    ///
    /// Laid out top to bottom, an upstream task above its dependents (a layered layout computed
    /// in pure Rust, no Graphviz). Each task is a box labelled with [`Node::label`]
    /// (`<g class="node task|map" data-node="<id>">`); a mapped task is drawn as a stack of two
    /// cards. Edges end in arrowheads: data edges solid, `#[wait_for]` (order) edges dashed,
    /// edges through glue dotted (`<g class="edge data|order|glue">`, the binding as tooltip).
    /// Glue nodes are not drawn, as in [`FlowGraph::to_dot`]. The same graph and states always
    /// give the same bytes.
    ///
    /// [`Node::label`]: crate::graph::Node::label
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use weft::prelude::*;
    /// use weft::viz::state_color;
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
    /// // States from elsewhere, e.g. a run read back from a database.
    /// let g = chain::graph();
    /// let states = HashMap::from([
    ///     (g.node("a").unwrap().id, StateKind::Completed),
    ///     (g.node("b").unwrap().id, StateKind::Failed),
    /// ]);
    /// let svg = g.to_svg_with_states(&states);
    /// assert!(svg.contains(&format!("fill=\"{}\"", state_color(StateKind::Failed))));
    /// assert!(svg.contains("<title>Failed</title>"));
    /// ```
    pub fn to_svg_with_states(&self, states: &HashMap<u32, StateKind>) -> String {
        let mut canvas = SvgCanvas::default();
        let tasks: Vec<_> = self.task_nodes().collect();
        if !tasks.is_empty() {
            // layout-rs panics on a graph without nodes, hence the check.
            let mut vg = VisualGraph::new(Orientation::TopToBottom);
            let mut handles = HashMap::new();
            for n in &tasks {
                let (w, h) = box_size(n.label(), n.kind);
                let element = Element::create_with_properties(
                    ShapeKind::new_box(n.label()),
                    StyleAttr::simple(),
                    Orientation::TopToBottom,
                    Point::new(w, h),
                    n.id.to_string(),
                );
                handles.insert(n.id, vg.add_node(element));
            }
            for (i, e) in self.edges.iter().enumerate() {
                // Edges touching a glue node (or an unknown id) are not drawn, as in DOT.
                let (Some(&from), Some(&to)) = (handles.get(&e.from), handles.get(&e.to)) else {
                    continue;
                };
                let mut arrow = Arrow::simple("");
                arrow.line_style = match e.kind {
                    EdgeKind::Data => LineStyleKind::Normal,
                    EdgeKind::Order => LineStyleKind::Dashed,
                    EdgeKind::Glue => LineStyleKind::Dotted,
                };
                arrow.properties = Some(i.to_string());
                vg.add_edge(arrow, from, to);
            }
            vg.do_it(false, false, false, &mut canvas);
        }
        canvas.finish(self, states)
    }
}

/// Layout size of a task's box (a mapped task's stack takes `STACK` more each way).
fn box_size(label: &str, kind: NodeKind) -> (f64, f64) {
    let w = (label.chars().count() as f64 * CHAR_WIDTH + 2.0 * BOX_PAD_X).max(BOX_MIN_WIDTH);
    let extra = if kind == NodeKind::Map { STACK } else { 0.0 };
    // A subflow's box has room for its side bars.
    let bars = if kind == NodeKind::Flow { 12.0 } else { 0.0 };
    (w + extra + bars, BOX_HEIGHT + extra)
}

/// Text for XML content and attribute values: `& < > "` escaped, control characters as spaces.
fn xml_esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with at most one decimal and no `-0`.
fn num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == 0.0 {
        "0".into()
    } else if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A chain of cubic curves as layout-rs routes an edge: the start and its exit control point,
/// then for each later point its entry control point and the point.
type BezierPath = Vec<(Point, Point)>;

/// Receives the placed boxes and routed edges from layout-rs (which tags them with our node id
/// and edge index through `properties`) and writes the SVG itself, to control the markup.
#[derive(Default)]
struct SvgCanvas {
    /// (node id, top-left, layout size).
    boxes: Vec<(u32, Point, Point)>,
    /// (edge index, bezier path as layout-rs gives it, arrowheads at (start, end)).
    arrows: Vec<(usize, BezierPath, (bool, bool))>,
}

impl RenderBackend for SvgCanvas {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        _look: &StyleAttr,
        properties: Option<String>,
        _clip: Option<ClipHandle>,
    ) {
        if let Some(id) = properties.and_then(|p| p.parse().ok()) {
            self.boxes.push((id, xy, size));
        }
    }

    fn draw_line(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_circle(&mut self, _: Point, _: Point, _: &StyleAttr, _: Option<String>) {}

    fn draw_text(&mut self, _: Point, _: &str, _: &StyleAttr) {}

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        _dashed: bool,
        head: (bool, bool),
        _look: &StyleAttr,
        properties: Option<String>,
        _text: &str,
    ) {
        if let Some(i) = properties.and_then(|p| p.parse().ok()) {
            if path.len() >= 2 {
                self.arrows.push((i, path.to_vec(), head));
            }
        }
    }

    fn create_clip(&mut self, _: Point, _: Point, _: usize) -> ClipHandle {
        0
    }
}

impl SvgCanvas {
    fn finish(&self, graph: &FlowGraph, states: &HashMap<u32, StateKind>) -> String {
        // Bounding box of everything drawn (bezier control points included: the curve stays
        // inside their hull), shifted to start at MARGIN.
        let (mut min, mut max) = (Point::splat(f64::MAX), Point::splat(f64::MIN));
        let mut grow = |p: Point| {
            min = Point::new(min.x.min(p.x), min.y.min(p.y));
            max = Point::new(max.x.max(p.x), max.y.max(p.y));
        };
        for (_, xy, size) in &self.boxes {
            grow(*xy);
            grow(xy.add(*size));
        }
        for (_, path, _) in &self.arrows {
            for (a, b) in path {
                grow(*a);
                grow(*b);
            }
        }
        if self.boxes.is_empty() && self.arrows.is_empty() {
            (min, max) = (Point::zero(), Point::zero());
        }
        let (dx, dy) = (MARGIN - min.x, MARGIN - min.y);
        let (w, h) = (
            num((max.x - min.x + 2.0 * MARGIN).ceil()),
            num((max.y - min.y + 2.0 * MARGIN).ceil()),
        );
        let at = |p: Point| format!("{} {}", num(p.x + dx), num(p.y + dy));

        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica, Arial, sans-serif\" \
             font-size=\"{}\" data-flow=\"{}\">\n",
            num(FONT_SIZE),
            xml_esc(&graph.name)
        );
        let _ = writeln!(
            out,
            "<defs>\n\
             <marker id=\"weft-arrow-end\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" \
             markerWidth=\"8\" markerHeight=\"8\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">\
             <path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"{STROKE}\"/></marker>\n\
             <marker id=\"weft-arrow-start\" viewBox=\"0 0 10 10\" refX=\"0\" refY=\"5\" \
             markerWidth=\"8\" markerHeight=\"8\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">\
             <path d=\"M 10 0 L 0 5 L 10 10 z\" fill=\"{STROKE}\"/></marker>\n\
             </defs>\n\
             <rect class=\"background\" width=\"100%\" height=\"100%\" fill=\"white\"/>"
        );

        for (id, xy, size) in &self.boxes {
            let Some(node) = graph.nodes.get(*id as usize) else {
                continue;
            };
            let map = node.kind == NodeKind::Map;
            let state = states.get(id);
            let fill = state.map_or("white", |k| state_color(*k));
            let (x, y) = (xy.x + dx, xy.y + dy);
            let extra = if map { STACK } else { 0.0 };
            let (bw, bh) = (size.x - extra, size.y - extra);
            let class = match node.kind {
                NodeKind::Map => "map",
                NodeKind::Flow => "flow",
                _ => "task",
            };
            let _ = write!(out, "<g class=\"node {class}\" data-node=\"{id}\">");
            if let Some(k) = state {
                let _ = write!(out, "<title>{k}</title>");
            }
            let rect = |x: f64, y: f64| {
                format!(
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"4\" fill=\"{fill}\" \
                     stroke=\"{STROKE}\" stroke-width=\"1.5\"/>",
                    num(x),
                    num(y),
                    num(bw),
                    num(bh)
                )
            };
            if map {
                out.push_str(&rect(x + STACK, y + STACK));
            }
            out.push_str(&rect(x, y));
            if node.kind == NodeKind::Flow {
                // A subflow: bars inside both sides, as flowcharts draw a subroutine.
                for bx in [x + 6.0, x + bw - 6.0] {
                    let _ = write!(
                        out,
                        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"{STROKE}\" \
                         stroke-width=\"1.5\"/>",
                        num(bx),
                        num(y),
                        num(y + bh)
                    );
                }
            }
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" dominant-baseline=\"central\" \
                 fill=\"black\">{}</text></g>",
                num(x + bw / 2.0),
                num(y + bh / 2.0),
                xml_esc(node.label())
            );
        }

        for (i, path, (start, end)) in &self.arrows {
            let Some(e) = graph.edges.get(*i) else {
                continue;
            };
            let (class, dash) = match e.kind {
                EdgeKind::Data => ("data", ""),
                EdgeKind::Order => ("order", " stroke-dasharray=\"6 4\""),
                EdgeKind::Glue => ("glue", " stroke-dasharray=\"1.5 3\""),
            };
            let _ = write!(out, "<g class=\"edge {class}\">");
            if let Some(b) = &e.binding {
                let _ = write!(out, "<title>{}</title>", xml_esc(b));
            }
            // See `BezierPath`: later curves continue smoothly (`S`).
            let mut d = format!(
                "M {} C {}, {}, {}",
                at(path[0].0),
                at(path[0].1),
                at(path[1].0),
                at(path[1].1)
            );
            for (c, p) in &path[2..] {
                let _ = write!(d, " S {}, {}", at(*c), at(*p));
            }
            let _ = write!(
                out,
                "<path d=\"{d}\" fill=\"none\" stroke=\"{STROKE}\" stroke-width=\"1.5\"{dash}"
            );
            if *start {
                out.push_str(" marker-start=\"url(#weft-arrow-start)\"");
            }
            if *end {
                out.push_str(" marker-end=\"url(#weft-arrow-end)\"");
            }
            out.push_str("/></g>\n");
        }
        out.push_str("</svg>\n");
        out
    }
}

impl<R> FlowRun<R> {
    /// Standalone SVG of the flow graph, each task filled with the color of its final state
    /// and the state as tooltip (see [`FlowGraph::to_svg_with_states`]).
    ///
    /// ```
    /// use weft::prelude::*;
    /// use weft::viz::state_color;
    ///
    /// #[task] async fn a() -> u32 { 1 }
    /// #[task] async fn boom(x: u32) -> Result<u32, String> { Err(format!("no {x}")) }
    ///
    /// #[flow]
    /// async fn flaky() -> u32 {
    ///     let x = a()?;
    ///     let y = boom(x)?;
    ///     y
    /// }
    ///
    /// # #[tokio::main] async fn main() {
    /// let run = flaky().await;
    /// let svg = run.to_svg();
    /// assert!(svg.contains(&format!("fill=\"{}\"", state_color(StateKind::Completed))));
    /// assert!(svg.contains(&format!("fill=\"{}\"", state_color(StateKind::Failed))));
    /// assert!(svg.contains("<title>Failed</title>"));
    /// # }
    /// ```
    pub fn to_svg(&self) -> String {
        self.graph.to_svg_with_states(&self.node_states())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Edge;
    use crate::viz::tests::{diamond, states, ESCAPED};

    fn class_is<'a>(n: &roxmltree::Node<'a, 'a>, prefix: &str) -> bool {
        n.attribute("class").is_some_and(|c| c.starts_with(prefix))
    }

    /// Node id -> (top y, bottom y) of its front box, from the parsed SVG.
    fn box_spans(doc: &roxmltree::Document) -> HashMap<u32, (f64, f64)> {
        let mut spans = HashMap::new();
        for g in doc.descendants().filter(|n| class_is(n, "node ")) {
            let id: u32 = g.attribute("data-node").unwrap().parse().unwrap();
            let rects: Vec<_> = g.children().filter(|c| c.has_tag_name("rect")).collect();
            let front = rects.last().unwrap(); // a map's second card comes first
            let y: f64 = front.attribute("y").unwrap().parse().unwrap();
            let h: f64 = front.attribute("height").unwrap().parse().unwrap();
            spans.insert(id, (y, y + h));
        }
        spans
    }

    #[test]
    fn svg_is_a_standalone_document_with_one_box_per_task_node() {
        let g = diamond();
        let svg = g.to_svg_with_states(&states());
        let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
        let root = doc.root_element();
        assert!(root.has_tag_name(("http://www.w3.org/2000/svg", "svg")));
        let (w, h) = (
            root.attribute("width").unwrap(),
            root.attribute("height").unwrap(),
        );
        assert_eq!(
            root.attribute("viewBox"),
            Some(format!("0 0 {w} {h}").as_str())
        );
        assert!(w.parse::<f64>().unwrap() > 0.0 && h.parse::<f64>().unwrap() > 0.0);

        let nodes: Vec<_> = doc.descendants().filter(|n| class_is(n, "node ")).collect();
        let mut labels: Vec<(&str, &str)> = nodes
            .iter()
            .map(|g| {
                let text = g.children().find(|c| c.has_tag_name("text")).unwrap();
                (g.attribute("class").unwrap(), text.text().unwrap())
            })
            .collect();
        labels.sort();
        assert_eq!(
            labels,
            [
                ("node map", "b"),
                ("node task", "a"),
                ("node task", ESCAPED),
                ("node task", "d")
            ]
        );
        // A mapped task is a stack of two cards; a plain task one box.
        for g in &nodes {
            let rects = g.children().filter(|c| c.has_tag_name("rect")).count();
            assert_eq!(rects, if class_is(g, "node map") { 2 } else { 1 });
        }
        assert!(!svg.contains("println!"), "glue nodes are not drawn");
    }

    #[test]
    fn svg_fills_follow_the_states() {
        let svg = diamond().to_svg_with_states(&states());
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let mut seen = 0;
        for g in doc.descendants().filter(|n| class_is(n, "node ")) {
            let id: u32 = g.attribute("data-node").unwrap().parse().unwrap();
            let want = states().get(&id).map_or("white", |k| state_color(*k));
            for rect in g.children().filter(|c| c.has_tag_name("rect")) {
                assert_eq!(rect.attribute("fill"), Some(want), "node {id}");
            }
            let title = g.children().find(|c| c.has_tag_name("title"));
            let want_title = states().get(&id).map(|k| k.to_string());
            assert_eq!(title.and_then(|t| t.text()), want_title.as_deref());
            seen += 1;
        }
        assert_eq!(seen, 4);
        // Without states every box is white and has no tooltip.
        let plain = diamond().to_svg();
        assert!(!plain.contains(state_color(StateKind::Completed)));
        assert!(!plain.contains("<title>Completed</title>"));
    }

    #[test]
    fn svg_draws_upstream_tasks_above_their_dependents() {
        let g = diamond();
        let svg = g.to_svg();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let spans = box_spans(&doc);
        assert_eq!(spans.len(), 4);
        for e in g.edges.iter().filter(|e| e.to != 4) {
            let (from, to) = (spans[&e.from], spans[&e.to]);
            assert!(from.1 < to.0, "{} -> {}: {from:?} {to:?}", e.from, e.to);
        }
    }

    #[test]
    fn svg_edges_have_arrowheads_and_their_kind_of_line() {
        let svg = diamond().to_svg();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let edges: Vec<_> = doc.descendants().filter(|n| class_is(n, "edge ")).collect();
        assert_eq!(edges.len(), 5, "the edge into the glue node is not drawn");
        let mut kinds = Vec::new();
        for g in &edges {
            let path = g.children().find(|c| c.has_tag_name("path")).unwrap();
            assert_eq!(path.attribute("marker-end"), Some("url(#weft-arrow-end)"));
            assert!(path.attribute("d").unwrap().starts_with("M "));
            let class = g.attribute("class").unwrap();
            let dash = path.attribute("stroke-dasharray");
            match class {
                "edge data" => assert_eq!(dash, None),
                "edge order" => assert_eq!(dash, Some("6 4")),
                "edge glue" => assert_eq!(dash, Some("1.5 3")),
                other => panic!("unexpected class {other}"),
            }
            kinds.push(class);
        }
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "edge data",
                "edge data",
                "edge data",
                "edge glue",
                "edge order"
            ]
        );
        assert!(doc
            .descendants()
            .any(|n| n.attribute("id") == Some("weft-arrow-end")));
    }

    #[test]
    fn svg_escapes_labels() {
        let svg = diamond().to_svg();
        assert!(svg.contains(">c &lt;&amp;&gt; &quot;q&quot;</text>"));
        assert!(!svg.contains("<&>"));
    }

    #[test]
    fn svg_is_deterministic() {
        let (g, s) = (diamond(), states());
        let first = g.to_svg_with_states(&s);
        assert_eq!(first, g.to_svg_with_states(&s));
        assert_eq!(first, diamond().clone().to_svg_with_states(&states()));
    }

    #[test]
    fn svg_of_odd_graphs_is_still_a_document() {
        let mut g = diamond();
        // Only glue: nothing to lay out.
        g.nodes = g.nodes[4..].to_vec().into();
        g.nodes.to_mut()[0].id = 0;
        g.edges = Vec::new().into();
        let svg = g.to_svg();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        assert!(doc.root_element().has_tag_name("svg"));
        assert_eq!(
            doc.descendants().filter(|n| class_is(n, "node ")).count(),
            0
        );

        // A cycle (possible in a graph built by hand) is drawn, not a panic.
        let mut g = diamond();
        g.edges.to_mut().push(Edge {
            from: 3,
            to: 0,
            kind: EdgeKind::Order,
            binding: None,
        });
        let doc_text = g.to_svg();
        let doc = roxmltree::Document::parse(&doc_text).unwrap();
        assert_eq!(
            doc.descendants().filter(|n| class_is(n, "edge ")).count(),
            6
        );
    }

    #[test]
    fn to_svg_is_to_svg_with_no_states() {
        let g = diamond();
        assert_eq!(g.to_svg(), g.to_svg_with_states(&HashMap::new()));
    }
}
