// Prepended to every kernel by `kernels.rs`. Binding 0 holds the dispatch's parameter block:
// words 0..12 are the element offsets of bindings 1..=12 inside their bound windows (a span is
// bound from an aligned byte offset at or below its start), words 12.. the op's own parameters.
@group(0) @binding(0) var<storage, read> P: array<u32>;

// The element offset of binding `b`'s span inside its window.
fn off(b: u32) -> u32 { return P[b - 1u]; }
// The op's parameter `j`, as an integer or as a float (bit pattern).
fn pu(j: u32) -> u32 { return P[12u + j]; }
fn pf(j: u32) -> f32 { return bitcast<f32>(P[12u + j]); }

// Kernels of one thread per element run workgroups of 256 threads on a 2-D grid (a dimension
// holds at most 65,535 workgroups); this is the thread's linear index.
fn linear(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { return (wg.y * nwg.x + wg.x) * 256u + lid; }
// The workgroup's linear index, for kernels of one workgroup per row.
fn group_index(wg: vec3<u32>, nwg: vec3<u32>) -> u32 { return wg.y * nwg.x + wg.x; }

const NEG_INF: f32 = -3.4028235e38;
