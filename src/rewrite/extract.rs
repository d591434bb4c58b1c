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
//!
//! A trial costs only the part of the graph it changes, not the whole graph: the search counts
//! how many chosen parents reach each class, so a switch adds the classes its new e-node makes
//! reachable and drops those its old one alone kept. Cycles are ruled out by a topological rank of
//! the current choice: an e-node whose children all rank below its class cannot close one, and
//! only the others are checked, by a walk that never descends below the class's rank.

use super::analysis::{EGraph, facts, ir_op};
use super::lang::ENode;
use crate::ir::{Leaf, TensorType};
use egg::{Id, Language};
use rustc_hash::FxHashMap;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// An e-node as the extractor sees it.
struct Candidate {
    node: ENode,
    /// Class indices of the children, distinct.
    children: Vec<usize>,
    cost: f64,
    /// The argument this e-node reads, if it is an argument leaf.
    arg: Option<usize>,
}

impl Candidate {
    /// True unless the e-node reads an argument `args` does not allow.
    fn allowed(&self, args: &[bool]) -> bool {
        self.arg
            .is_none_or(|i| args.get(i).copied().unwrap_or(true))
    }
}

/// The result of an extraction.
pub struct Extraction {
    /// The chosen e-node of every class the roots reach.
    pub choice: FxHashMap<Id, ENode>,
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
    Extractor::new(egraph, batch).extract(roots, &[], budget)
}

/// Extractions from one e-graph for several sets of roots (the graphs loaded together): the
/// e-graph is flattened and costed once.
pub struct Extractor<'e> {
    egraph: &'e EGraph,
    dag: Dag,
}

impl<'e> Extractor<'e> {
    /// Prepares extraction from `egraph`, with symbols bound to `batch` for costs.
    pub fn new(egraph: &'e EGraph, batch: u64) -> Extractor<'e> {
        Extractor {
            egraph,
            dag: Dag::new(egraph, batch),
        }
    }

    /// Chooses one e-node per class reachable from `roots`, reading only the arguments `args`
    /// allows (by index; arguments past its end are allowed), within `budget` for the local
    /// search.
    pub fn extract(&self, roots: &[Id], args: &[bool], budget: Duration) -> Extraction {
        let start = Instant::now();
        let dag = &self.dag;
        let roots: Vec<usize> = roots
            .iter()
            .map(|&r| dag.index[&self.egraph.find(r)])
            .collect();
        let (choice, tree_cost) = dag.tree_seed(args, &roots);
        assert!(
            roots.iter().all(|&r| tree_cost[r].is_finite()),
            "every root is extractable: it holds the node it was loaded from"
        );
        let mut search = LocalSearch::new(dag, choice, &tree_cost, &roots, args);
        let seed_cost = search.cost;
        let mut passes = 0;
        let converged = loop {
            passes += 1;
            let mut improved = false;
            let mut out_of_time = false;
            for class in dag.reachable(&search.choice, &roots) {
                out_of_time = start.elapsed() > budget;
                if out_of_time {
                    break;
                }
                improved |= search.improve(class);
            }
            if out_of_time {
                break false;
            }
            if !improved {
                break true;
            }
        };
        // Kept up to date switch by switch (the cycle check keeps the choice acyclic).
        let cost = search.cost;
        let choice = search.choice;
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
}

/// The e-graph flattened into indexed classes and candidates.
struct Dag {
    classes: Vec<Id>,
    index: FxHashMap<Id, usize>,
    candidates: Vec<Vec<Candidate>>,
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
        let index: FxHashMap<Id, usize> =
            classes.iter().enumerate().map(|(i, &c)| (c, i)).collect();
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
                            arg: match node {
                                ENode::Leaf(Leaf::Arg(i), _) => Some(*i),
                                _ => None,
                            },
                        }
                    })
                    .collect()
            })
            .collect();
        Dag {
            classes,
            index,
            candidates,
        }
    }

    /// The cheapest choice by tree cost, and each class's tree cost (infinite when the class
    /// cannot be extracted from the arguments `args` allows, or when no e-node reachable from the
    /// roots leads to it: the other graphs of a shared e-graph are left alone). A class is
    /// settled in order of cost and a node is considered only once all its children are settled,
    /// so the choice is acyclic whatever the rounding.
    fn tree_seed(&self, args: &[bool], roots: &[usize]) -> (Vec<usize>, Vec<f64>) {
        let n = self.classes.len();
        let scope = self.closure(roots);
        // Flat arrays, not a vector per class: this runs once per graph over a shared e-graph.
        // Candidate `k` of class `c` is number `first[c] + k`; it waits for `waiting[…]` children.
        let mut first = vec![0; n];
        let mut candidates = 0;
        // The (class, k) e-nodes having each class as a child: `users[starts[c]..starts[c + 1]]`.
        let mut starts = vec![0; n + 1];
        for &class in &scope {
            first[class] = candidates;
            candidates += self.candidates[class].len();
            for candidate in &self.candidates[class] {
                for &child in &candidate.children {
                    starts[child + 1] += 1;
                }
            }
        }
        for c in 0..n {
            starts[c + 1] += starts[c];
        }
        let mut users = vec![(0, 0); starts[n]];
        let mut filled = starts.clone();
        let mut waiting = vec![0; candidates];
        let mut queue = BinaryHeap::new();
        for &class in &scope {
            for (k, candidate) in self.candidates[class].iter().enumerate() {
                waiting[first[class] + k] = candidate.children.len();
                for &child in &candidate.children {
                    users[filled[child]] = (class, k);
                    filled[child] += 1;
                }
                if candidate.children.is_empty() && candidate.allowed(args) {
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
            for &(parent, pk) in &users[starts[class]..starts[class + 1]] {
                let wait = &mut waiting[first[parent] + pk];
                *wait -= 1;
                if *wait == 0 && !best[parent].is_finite() {
                    let candidate = &self.candidates[parent][pk];
                    // Saturated: a tree cost doubles with each level that uses a value twice
                    // (`h · sigmoid(h)`), and past f64's range it would read as unsettled.
                    let total = candidate
                        .children
                        .iter()
                        .fold(candidate.cost, |sum, &c| sum + best[c])
                        .min(f64::MAX);
                    queue.push(Reverse((Cost(total), parent, pk)));
                }
            }
        }
        (choice, best)
    }

    /// The classes the roots reach through any of their e-nodes.
    fn closure(&self, roots: &[usize]) -> Vec<usize> {
        let mut entered = vec![false; self.classes.len()];
        let mut order = Vec::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(class) = stack.pop() {
            if entered[class] {
                continue;
            }
            entered[class] = true;
            order.push(class);
            for candidate in &self.candidates[class] {
                stack.extend(&candidate.children);
            }
        }
        order
    }

    /// The classes the roots reach under `choice`, parents before children.
    fn reachable(&self, choice: &[usize], roots: &[usize]) -> Vec<usize> {
        let mut entered = vec![false; self.classes.len()];
        let mut order = Vec::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(class) = stack.pop() {
            if entered[class] {
                continue;
            }
            entered[class] = true;
            order.push(class);
            stack.extend(&self.candidates[class][choice[class]].children);
        }
        order
    }
}

/// The local search's state: the current choice, how many chosen parents (or roots) reach each
/// class, and a topological rank of the choice (every chosen e-node's children rank below its
/// class).
struct LocalSearch<'d> {
    dag: &'d Dag,
    /// The arguments the graph may read (see [`Candidate::allowed`]).
    args: &'d [bool],
    choice: Vec<usize>,
    /// Classes that can be extracted at all (finite tree cost).
    usable: Vec<bool>,
    /// Chosen parents (plus one per root occurrence) of each class; 0: not on the graph.
    references: Vec<u32>,
    rank: Vec<usize>,
    /// The graph's DAG cost, kept up to date switch by switch.
    cost: f64,
    stack: Vec<usize>,
    /// Walk stamps of the cycle check.
    seen: Vec<u32>,
    stamp: u32,
}

impl<'d> LocalSearch<'d> {
    fn new(
        dag: &'d Dag,
        choice: Vec<usize>,
        tree_cost: &[f64],
        roots: &[usize],
        args: &'d [bool],
    ) -> LocalSearch<'d> {
        let n = dag.classes.len();
        let mut search = LocalSearch {
            dag,
            args,
            choice,
            usable: tree_cost.iter().map(|c| c.is_finite()).collect(),
            references: vec![0; n],
            rank: Vec::new(),
            cost: 0.0,
            stack: Vec::new(),
            seen: vec![0; n],
            stamp: 0,
        };
        search.rank_topologically();
        for &root in roots {
            search.cost += search.reference(root);
        }
        search
    }

    /// Tries every other e-node of `class` (if it is still on the graph) and keeps each that
    /// makes the graph cheaper. True if one was kept.
    fn improve(&mut self, class: usize) -> bool {
        let dag = self.dag;
        let mut improved = false;
        for (k, candidate) in dag.candidates[class].iter().enumerate() {
            let current = self.choice[class];
            if self.references[class] == 0
                || k == current
                || !candidate.allowed(self.args)
                || !candidate.children.iter().all(|&c| self.usable[c])
            {
                continue;
            }
            let reorders = candidate
                .children
                .iter()
                .any(|&c| self.rank[c] >= self.rank[class]);
            if reorders && self.closes_cycle(class, k) {
                continue;
            }
            let delta = self.switch(class, k);
            if delta < -1e-12 * self.cost.abs() {
                self.cost += delta;
                improved = true;
                if reorders {
                    self.rank_topologically();
                }
            } else {
                self.switch(class, current);
            }
        }
        improved
    }

    /// Chooses e-node `k` for `class`, which is on the graph; returns the change of the DAG cost.
    /// Classes the new e-node reaches are referenced before the old one's are released, so that
    /// the classes both reach stay on the graph untouched.
    fn switch(&mut self, class: usize, k: usize) -> f64 {
        let dag = self.dag;
        let old = &dag.candidates[class][self.choice[class]];
        let new = &dag.candidates[class][k];
        self.choice[class] = k;
        let mut delta = new.cost - old.cost;
        for &child in &new.children {
            delta += self.reference(child);
        }
        for &child in &old.children {
            delta -= self.release(child);
        }
        delta
    }

    /// Adds a reference to `class`; returns the cost of the classes this puts on the graph.
    fn reference(&mut self, class: usize) -> f64 {
        let mut added = 0.0;
        self.stack.push(class);
        while let Some(c) = self.stack.pop() {
            self.references[c] += 1;
            if self.references[c] == 1 {
                let chosen = &self.dag.candidates[c][self.choice[c]];
                added += chosen.cost;
                self.stack.extend(&chosen.children);
            }
        }
        added
    }

    /// Removes a reference to `class`; returns the cost of the classes this takes off the graph.
    fn release(&mut self, class: usize) -> f64 {
        let mut removed = 0.0;
        self.stack.push(class);
        while let Some(c) = self.stack.pop() {
            self.references[c] -= 1;
            if self.references[c] == 0 {
                let chosen = &self.dag.candidates[c][self.choice[c]];
                removed += chosen.cost;
                self.stack.extend(&chosen.children);
            }
        }
        removed
    }

    /// True if choosing e-node `k` for `class` would make `class` reach itself. Only classes
    /// ranked above `class` can reach it, so the walk stops at any class ranked below.
    fn closes_cycle(&mut self, class: usize, k: usize) -> bool {
        self.stamp += 1;
        let bound = self.rank[class];
        self.stack.clear();
        self.stack.extend(&self.dag.candidates[class][k].children);
        while let Some(c) = self.stack.pop() {
            if c == class {
                self.stack.clear();
                return true;
            }
            if self.rank[c] < bound || self.seen[c] == self.stamp {
                continue;
            }
            self.seen[c] = self.stamp;
            self.stack
                .extend(&self.dag.candidates[c][self.choice[c]].children);
        }
        false
    }

    /// Ranks every usable class in post-order of the chosen e-nodes (children first); the
    /// choice is acyclic on usable classes, so this is a topological order.
    fn rank_topologically(&mut self) {
        let n = self.dag.classes.len();
        self.rank = vec![usize::MAX; n];
        let mut next = 0;
        // (class, children visited) pairs.
        let mut stack: Vec<(usize, bool)> = Vec::new();
        for start in 0..n {
            if !self.usable[start] || self.rank[start] != usize::MAX {
                continue;
            }
            stack.push((start, false));
            while let Some((c, expanded)) = stack.pop() {
                if self.rank[c] != usize::MAX {
                    continue;
                }
                if expanded {
                    self.rank[c] = next;
                    next += 1;
                    continue;
                }
                stack.push((c, true));
                for &child in &self.dag.candidates[c][self.choice[c]].children {
                    if self.rank[child] == usize::MAX {
                        stack.push((child, false));
                    }
                }
            }
        }
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
