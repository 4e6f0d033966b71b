//! agentmerge-merge (in progress)
