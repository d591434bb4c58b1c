//! Equality saturation that searches only where the last iteration changed the e-graph.
//!
//! egg's `Runner` searches every rule over the whole e-graph in every iteration, so a phase costs
//! iterations × rules × e-graph size even when an iteration changed a handful of classes; on a
//! deep model, that made rule search most of the compile time. A match that did not exist in the
//! previous iteration must involve a class that changed since: one that was created, merged or
//! whose analysis facts (constant value, sign) changed. A left-hand side of height `h` (its
//! root at level 0, its variables at most `h` levels below) reads classes at most `h` levels
//! below its root, so after a full first search only the changed classes and their ancestors up
//! to `h` levels up need searching again. Matches found before were applied then; applying them
//! again would add nothing, so the result is the one a full search in every iteration gives —
//! unless a rule found more matches in one iteration than the phase may hold nodes: those past
//! the limit are dropped, and the phase then ends as "match limit", never "saturated".
//!
//! Either search also starts from a pattern's rarest operator when few classes hold it: a match
//! of `(matmul ?p (neg ?a) ?b)` is rooted one level above a class holding a `neg`, so only those
//! parents need trying, not every matmul.
//!
//! The analysis records the changed classes: `TensorAnalysis::modify` runs for every new
//! class, every union and every change of a class's facts.

use super::analysis::EGraph;
use super::lang::ENode;
use super::rules::Rewrite;
use egg::{ENodeOrVar, Id, Language, SearchMatches, StopReason};
use rustc_hash::{FxHashMap, FxHashSet};
use std::time::{Duration, Instant};

/// Rules to run, and whether the e-graph is already saturated under each group.
pub struct RuleSet<'a> {
    /// Rules whose every match in the e-graph as it is is already applied: searched only where
    /// the e-graph changes.
    pub saturated: &'a [Rewrite],
    /// Rules searched over the whole e-graph in the first iteration.
    pub fresh: &'a [Rewrite],
}

/// How a run ended.
pub struct Outcome {
    pub iterations: usize,
    pub stop_reason: StopReason,
}

/// When a run stops: after `iterations` iterations, once the e-graph has more than `nodes`
/// e-nodes, or after `time`.
#[derive(Clone, Copy)]
pub struct Limits {
    pub iterations: usize,
    pub nodes: usize,
    pub time: Duration,
}

/// Rewrites `egraph` with `rules` until no rule changes it or a limit is reached. Like egg's
/// `Runner`, every iteration applies all the matches it found (checking the node and time limits
/// after each rule) and then rebuilds.
pub fn saturate(egraph: &mut EGraph, rules: RuleSet, limits: Limits) -> Outcome {
    let start = Instant::now();
    let all: Vec<&Rewrite> = rules.fresh.iter().chain(rules.saturated).collect();
    let heights: Vec<usize> = all.iter().map(|rule| lhs_height(rule)).collect();
    let max_height = heights.iter().copied().max().unwrap_or(0);
    if !egraph.clean {
        egraph.rebuild();
    }
    egraph.analysis.changed.clear();
    // Classes to search in the next iteration, by how far above a change they may be; `None`
    // for the first iteration of the fresh rules (everything).
    let mut dirty: Option<Vec<FxHashMap<ENode, Vec<Id>>>> = None;
    let mut iterations = 0;
    // Whether some rule's matches were cut at the limit: then no iteration proves saturation.
    let mut matches_dropped = false;
    loop {
        if let Some(reason) = over_limit(egraph, &limits, start, iterations) {
            return Outcome {
                iterations,
                stop_reason: reason,
            };
        }
        let matches: Vec<Vec<SearchMatches<ENode>>> = all
            .iter()
            .zip(&heights)
            .enumerate()
            .map(|(i, (rule, &height))| match &dirty {
                None if i < rules.fresh.len() => search_all(rule, egraph, limits.nodes),
                None => Vec::new(),
                Some(levels) => search_in(rule, egraph, &levels[height], limits.nodes),
            })
            .collect();
        iterations += 1;
        matches_dropped |= matches
            .iter()
            .any(|found| found.iter().map(|m| m.substs.len()).sum::<usize>() >= limits.nodes);
        let mut stopped = None;
        for (rule, found) in all.iter().zip(&matches) {
            rule.apply(egraph, found);
            if let Some(reason) = over_limit(egraph, &limits, start, 0) {
                stopped = Some(reason);
                break;
            }
        }
        if egraph.analysis.changed.is_empty() {
            // Every union was of classes already equal and every added node already there: the
            // e-graph is as it was, and a rebuild (which visits every class) would change nothing.
            egraph.clean = true;
        } else {
            egraph.rebuild();
        }
        let changed = std::mem::take(&mut egraph.analysis.changed);
        if let Some(reason) = stopped {
            return Outcome {
                iterations,
                stop_reason: reason,
            };
        }
        if changed.is_empty() {
            let stop_reason = match matches_dropped {
                true => StopReason::Other("match limit".to_string()),
                false => StopReason::Saturated,
            };
            return Outcome {
                iterations,
                stop_reason,
            };
        }
        dirty = Some(ancestors_by_op(egraph, &changed, max_height));
    }
}

fn over_limit(
    egraph: &EGraph,
    limits: &Limits,
    start: Instant,
    iterations: usize,
) -> Option<StopReason> {
    let elapsed = start.elapsed();
    if elapsed > limits.time {
        return Some(StopReason::TimeLimit(elapsed.as_secs_f64()));
    }
    let size = egraph.total_size();
    if size > limits.nodes {
        return Some(StopReason::NodeLimit(size));
    }
    if iterations >= limits.iterations {
        return Some(StopReason::IterationLimit(iterations));
    }
    None
}

/// How many levels below its root a rule's left-hand side reads: a variable counts as a level,
/// since conditions read the facts of the class it binds.
fn lhs_height(rule: &Rewrite) -> usize {
    let nodes = pattern(rule);
    let mut height = vec![0; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        if let ENodeOrVar::ENode(n) = node {
            height[i] = n
                .children()
                .iter()
                .map(|&c| height[usize::from(c)] + 1)
                .max()
                .unwrap_or(0);
        }
    }
    height.last().copied().unwrap_or(0)
}

/// The matches of `rule` in the whole e-graph, at most `limit` (see [`search_classes`]).
fn search_all<'a>(
    rule: &'a Rewrite,
    egraph: &EGraph,
    limit: usize,
) -> Vec<SearchMatches<'a, ENode>> {
    let root_classes = match pattern(rule).last() {
        Some(ENodeOrVar::ENode(root)) => egraph
            .classes_for_op(&root.discriminant())
            .map_or(0, |classes| classes.len()),
        _ => egraph.number_of_classes(),
    };
    match rare_roots(rule, egraph, root_classes) {
        Some(roots) => search_classes(rule, egraph, roots.iter(), limit),
        None => rule.search_with_limit(egraph, limit),
    }
}

/// The matches of `rule` rooted in `classes` (the classes holding its root's operator), at most
/// `limit`.
fn search_in<'a>(
    rule: &'a Rewrite,
    egraph: &EGraph,
    classes: &FxHashMap<ENode, Vec<Id>>,
    limit: usize,
) -> Vec<SearchMatches<'a, ENode>> {
    let candidates: Vec<&Id> = match pattern(rule).last() {
        Some(ENodeOrVar::ENode(root)) => match classes.get(&root.discriminant()) {
            Some(ids) => ids.iter().collect(),
            None => return Vec::new(),
        },
        _ => classes.values().flatten().collect(),
    };
    match rare_roots(rule, egraph, candidates.len()) {
        Some(roots) => search_classes(
            rule,
            egraph,
            candidates.into_iter().filter(|c| roots.contains(c)),
            limit,
        ),
        None => search_classes(rule, egraph, candidates.into_iter(), limit),
    }
}

/// The matches of `rule` rooted in `classes`, at most `limit` of them. The limit is the phase's
/// node limit: each match adds about one e-node, so more could never all be applied, and on
/// a chain like `h ← h + h` a rule such as associativity finds matches by the cube of the depth
/// (130 lines took 8 GB before the search was bounded). Matches left out are lost to the phase
/// (which then does not count as saturated); rewriting only ever adds equalities, so the graph
/// stays right either way.
fn search_classes<'a, 'i>(
    rule: &'a Rewrite,
    egraph: &EGraph,
    classes: impl Iterator<Item = &'i Id>,
    limit: usize,
) -> Vec<SearchMatches<'a, ENode>> {
    let mut left = limit;
    let mut found = Vec::new();
    for &class in classes {
        if left == 0 {
            break;
        }
        if let Some(matches) = rule.searcher.search_eclass_with_limit(egraph, class, left) {
            left = left.saturating_sub(matches.substs.len());
            found.push(matches);
        }
    }
    found
}

/// The left-hand side of `rule`, its root last.
fn pattern(rule: &Rewrite) -> &[ENodeOrVar<ENode>] {
    rule.searcher
        .get_pattern_ast()
        .expect("every rule's left-hand side is a pattern")
        .as_ref()
}

/// Where `rule` can match when an operator below its root is rare in the e-graph (a `neg` under
/// a `matmul`): the ancestors, as many levels up as that operator sits below the root, of the
/// classes holding it — a superset of the classes a match can be rooted in. `None` unless fewer
/// than a quarter of `candidates` (the classes that would be searched otherwise) hold it: the
/// walk up is not free.
fn rare_roots(rule: &Rewrite, egraph: &EGraph, candidates: usize) -> Option<FxHashSet<Id>> {
    let nodes = pattern(rule);
    // Children come before their parents in a pattern, the root last.
    let mut depth = vec![0; nodes.len()];
    for i in (0..nodes.len()).rev() {
        if let ENodeOrVar::ENode(node) = &nodes[i] {
            for &child in node.children() {
                depth[usize::from(child)] = depth[i] + 1;
            }
        }
    }
    let holding = |node: &ENode| egraph.classes_for_op(&node.discriminant());
    let count = |node: &ENode| holding(node).map_or(0, |classes| classes.len());
    let (rarest, levels) = nodes
        .iter()
        .zip(&depth)
        .filter_map(|(node, &d)| match node {
            ENodeOrVar::ENode(node) if d > 0 => Some((node, d)),
            _ => None,
        })
        .min_by_key(|(node, _)| count(node))?;
    if 4 * count(rarest) >= candidates {
        return None;
    }
    let mut frontier: FxHashSet<Id> = holding(rarest).into_iter().flatten().collect();
    for _ in 0..levels {
        frontier = frontier
            .iter()
            .flat_map(|&class| egraph[class].parents())
            .map(|parent| egraph.find(parent))
            .collect();
    }
    Some(frontier)
}

/// The classes in `changed` and their ancestors up to `levels` levels above them: element `k`
/// of the result holds those at most `k` levels above a change, grouped by the operators of
/// their e-nodes (a class appears once under each operator it holds).
fn ancestors_by_op(
    egraph: &EGraph,
    changed: &[Id],
    levels: usize,
) -> Vec<FxHashMap<ENode, Vec<Id>>> {
    let mut seen: FxHashSet<Id> = FxHashSet::default();
    let mut frontier: Vec<Id> = changed
        .iter()
        .map(|&id| egraph.find(id))
        .filter(|&id| seen.insert(id))
        .collect();
    let mut result: Vec<FxHashMap<ENode, Vec<Id>>> = Vec::with_capacity(levels + 1);
    let mut by_op: FxHashMap<ENode, Vec<Id>> = FxHashMap::default();
    for level in 0..=levels {
        for &class in &frontier {
            let mut operators: Vec<ENode> = Vec::new();
            for node in &egraph[class].nodes {
                if !operators.iter().any(|op| op.matches(node)) {
                    operators.push(node.discriminant());
                }
            }
            for op in operators {
                by_op.entry(op).or_default().push(class);
            }
        }
        result.push(by_op.clone());
        if level == levels {
            break;
        }
        frontier = frontier
            .iter()
            .flat_map(|&class| egraph[class].parents())
            .map(|parent| egraph.find(parent))
            .filter(|&id| seen.insert(id))
            .collect();
    }
    result
}
