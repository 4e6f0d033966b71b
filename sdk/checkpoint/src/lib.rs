//! agentmerge-checkpoint (in progress)
