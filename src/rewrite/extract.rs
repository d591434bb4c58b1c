//! DAG-aware extraction: one e-node per e-class, minimizing the cost of the graph it spells, with
//! every shared node counted once.
//!
//! Tree extraction (egg's `Extractor`) charges a node once per use, so it prefers a recomputed
//! value over a shared one whenever the recomputation looks cheaper in isolation — exactly wrong
//! for derivative graphs, where most values are shared. Here a tree-cost seed (Knuth's
//! generalization of Dijkstra, acyclic by construction) is improved by local search on the true
//! DAG cost: each class on the chosen graph tries each of its other e-nodes, and a switch is kept
//! when the whole graph gets cheaper (and stays acyclic). The search stops when a pass improves
//! nothing or the time budget is spent.

use super::analysis::{EGraph, facts, ir_op};
use super::lang::ENode;
use crate::ir::{Leaf, TensorType};
use egg::{Id, Language};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// An e-node as the extractor sees it.
struct Candidate {
    node: ENode,
    /// Class indices of the children, distinct.
    children: Vec<usize>,
    cost: f64,
}

/// The result of an extraction.
pub struct Extraction {
    /// The chosen e-node of every class the roots reach.
    pub choice: HashMap<Id, ENode>,
    /// The DAG cost of the tree-cost seed and of the final choice.
    pub seed_cost: f64,
    pub cost: f64,
    /// Local-search passes run.
    pub passes: usize,
    /// True if the last pass improved nothing (false: the time budget ran out first).
    pub converged: bool,
}

/// Chooses one e-node per class reachable from `roots`, with symbols bound to `batch` for costs.
pub fn extract(egraph: &EGraph, roots: &[Id], batch: u64, budget: Duration) -> Extraction {
    let start = Instant::now();
    let mut dag = Dag::new(egraph, batch);
    let roots: Vec<usize> = roots.iter().map(|&r| dag.index[&egraph.find(r)]).collect();
    let (mut choice, tree_cost) = dag.tree_seed();
    assert!(
        roots.iter().all(|&r| tree_cost[r].is_finite()),
        "every root is extractable: it holds the node it was loaded from"
    );
    let seed_cost = dag
        .cost(&choice, &roots)
        .expect("the tree seed is acyclic by construction");
    let mut cost = seed_cost;
    let mut passes = 0;
    let converged = loop {
        passes += 1;
        let mut improved = false;
        for class in dag.reachable(&choice, &roots) {
            if start.elapsed() > budget {
                break;
            }
            let original = choice[class];
            for k in 0..dag.candidates[class].len() {
                let usable = dag.candidates[class][k]
                    .children
                    .iter()
                    .all(|&c| tree_cost[c].is_finite());
                if k == original || !usable {
                    continue;
                }
                let kept = choice[class];
                choice[class] = k;
                match dag.cost(&choice, &roots) {
                    Some(c) if c < cost * (1.0 - 1e-12) => {
                        cost = c;
                        improved = true;
                    }
                    _ => choice[class] = kept,
                }
            }
        }
        if !improved {
            break true;
        }
        if start.elapsed() > budget {
            break false;
        }
    };
    let choice = dag
        .reachable(&choice, &roots)
        .into_iter()
        .map(|c| (dag.classes[c], dag.candidates[c][choice[c]].node.clone()))
        .collect();
    Extraction {
        choice,
        seed_cost,
        cost,
        passes,
        converged,
    }
}

/// The e-graph flattened into indexed classes and candidates, with scratch space for DAG walks.
struct Dag {
    classes: Vec<Id>,
    index: HashMap<Id, usize>,
    candidates: Vec<Vec<Candidate>>,
    /// Walk stamps: `entered[c] == stamp` once the walk reached `c`, `finished[c] == stamp` once
    /// all of `c`'s children are done (entered but not finished means on the current path).
    entered: Vec<u32>,
    finished: Vec<u32>,
    stamp: u32,
}

/// An f64 ordered by `total_cmp`, for the priority queue.
#[derive(PartialEq)]
struct Cost(f64);

impl Eq for Cost {}

impl PartialOrd for Cost {
    fn partial_cmp(&self, other: &Cost) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cost {
    fn cmp(&self, other: &Cost) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Dag {
    fn new(egraph: &EGraph, batch: u64) -> Dag {
        let classes: Vec<Id> = egraph.classes().map(|c| c.id).collect();
        let index: HashMap<Id, usize> = classes.iter().enumerate().map(|(i, &c)| (c, i)).collect();
        let candidates = classes
            .iter()
            .map(|&class| {
                egraph[class]
                    .nodes
                    .iter()
                    .map(|node| {
                        let mut children: Vec<usize> = node
                            .children()
                            .iter()
                            .map(|&c| index[&egraph.find(c)])
                            .collect();
                        children.sort_unstable();
                        children.dedup();
                        Candidate {
                            cost: node_cost(egraph, class, node, batch),
                            node: node.clone(),
                            children,
                        }
                    })
                    .collect()
            })
            .collect();
        let n = classes.len();
        Dag {
            classes,
            index,
            candidates,
            entered: vec![0; n],
            finished: vec![0; n],
            stamp: 0,
        }
    }

    /// The cheapest choice by tree cost, and each class's tree cost (infinite when the class
    /// cannot be extracted). A class is settled in order of cost and a node is considered only
    /// once all its children are settled, so the choice is acyclic whatever the rounding.
    fn tree_seed(&self) -> (Vec<usize>, Vec<f64>) {
        let n = self.classes.len();
        let mut parents: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        let mut waiting: Vec<Vec<usize>> = Vec::with_capacity(n);
        let mut queue = BinaryHeap::new();
        for (class, candidates) in self.candidates.iter().enumerate() {
            waiting.push(candidates.iter().map(|c| c.children.len()).collect());
            for (k, candidate) in candidates.iter().enumerate() {
                for &child in &candidate.children {
                    parents[child].push((class, k));
                }
                if candidate.children.is_empty() {
                    queue.push(Reverse((Cost(candidate.cost), class, k)));
                }
            }
        }
        let mut best = vec![f64::INFINITY; n];
        let mut choice = vec![0; n];
        while let Some(Reverse((Cost(cost), class, k))) = queue.pop() {
            if best[class].is_finite() {
                continue;
            }
            best[class] = cost;
            choice[class] = k;
            for &(parent, pk) in &parents[class] {
                waiting[parent][pk] -= 1;
                if waiting[parent][pk] == 0 && !best[parent].is_finite() {
                    let candidate = &self.candidates[parent][pk];
                    let total = candidate
                        .children
                        .iter()
                        .fold(candidate.cost, |sum, &c| sum + best[c]);
                    queue.push(Reverse((Cost(total), parent, pk)));
                }
            }
        }
        (choice, best)
    }

    /// The classes the roots reach under `choice`, parents before children.
    fn reachable(&mut self, choice: &[usize], roots: &[usize]) -> Vec<usize> {
        self.stamp += 1;
        let mut order = Vec::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(class) = stack.pop() {
            if self.entered[class] == self.stamp {
                continue;
            }
            self.entered[class] = self.stamp;
            order.push(class);
            stack.extend(&self.candidates[class][choice[class]].children);
        }
        order
    }

    /// The DAG cost of `choice` from `roots`: each reachable class's chosen node once. `None` if
    /// the choice has a cycle.
    fn cost(&mut self, choice: &[usize], roots: &[usize]) -> Option<f64> {
        self.stamp += 1;
        let stamp = self.stamp;
        let mut total = 0.0;
        // (class, next child to visit)
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for &root in roots {
            if self.entered[root] == stamp {
                continue;
            }
            self.entered[root] = stamp;
            stack.push((root, 0));
            while let Some((class, next)) = stack.pop() {
                let candidate = &self.candidates[class][choice[class]];
                match candidate.children.get(next) {
                    Some(&child) => {
                        stack.push((class, next + 1));
                        if self.entered[child] == stamp {
                            if self.finished[child] != stamp {
                                return None;
                            }
                            continue;
                        }
                        self.entered[child] = stamp;
                        stack.push((child, 0));
                    }
                    None => {
                        self.finished[class] = stamp;
                        total += candidate.cost;
                    }
                }
            }
        }
        Some(total)
    }
}

/// The extraction cost of one e-node: FLOPs plus bytes, plus one so that of two equally costly
/// graphs the one with fewer nodes wins. Arguments and parameters are free: they are there anyway.
fn node_cost(egraph: &EGraph, class: Id, node: &ENode, batch: u64) -> f64 {
    let Some((op, operands)) = ir_op(egraph, node) else {
        return 0.0;
    };
    if matches!(node, ENode::Leaf(Leaf::Arg(_), _)) {
        return 0.0;
    }
    let inputs: Vec<&TensorType> = operands.iter().map(|&x| &facts(egraph, x).ty).collect();
    let output = &facts(egraph, class).ty;
    op.work(&inputs, output, batch).total() + 1.0
}
