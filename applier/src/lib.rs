//! podnet applier
