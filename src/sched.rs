//! Scheduling policy: which vCPU a physical CPU runs next.
