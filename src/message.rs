//! Route-tagged messages and echo matching, shared by every job.
