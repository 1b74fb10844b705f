//! Per-node plans: the pure data a node's kernel state and files must match (stub).
