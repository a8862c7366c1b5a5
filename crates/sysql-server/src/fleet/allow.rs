//! What a worker runs: plans made only of the nodes of this list, checked
//! after the plan is decoded and before it is registered (the crate's
//! worker plan hook). A worker runs whatever it is sent otherwise: a file
//! scan, a write, a call to another worker.

use super::scan::LocalScanExec;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// Nodes a worker accepts, by name, besides its own scan and partial
/// aggregates: computations over rows already read, none of which reads or
/// writes anything else.
const ALLOWED: &[&str] = &[
    "FilterExec",
    "ProjectionExec",
    "SortPreservingMergeExec",
    "LocalLimitExec",
    "GlobalLimitExec",
    "CoalescePartitionsExec",
    "CoalesceBatchesExec",
    "CooperativeExec",
    "RepartitionExec",
    "EmptyExec",
    "PlaceholderRowExec",
];

/// True if a worker accepts this node (its children aside).
pub fn allowed(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.is::<LocalScanExec>()
        || node.downcast_ref::<AggregateExec>().is_some_and(|a| *a.mode() == AggregateMode::Partial)
        // a sort, with or without its limit (`SortExec(TopK)`)
        || node.is::<SortExec>()
        || ALLOWED.contains(&node.name())
}

/// Refuses a plan holding a node outside the list.
pub fn check(plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    let mut refused: Option<String> = None;
    plan.apply(|node| {
        if !allowed(node) {
            let what = match node.downcast_ref::<AggregateExec>() {
                Some(a) => format!("AggregateExec (mode {:?})", a.mode()),
                None => node.name().to_string(),
            };
            refused = Some(what);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match refused {
        Some(node) => Err(DataFusionError::Plan(format!(
            "sysql worker: refused a plan with {node}: a worker runs scans of its own tables, filters, projections, partial aggregates, sorts and limits only"
        ))),
        None => Ok(()),
    }
}
