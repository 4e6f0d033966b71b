//! agentmerge-miniarena (in progress)
