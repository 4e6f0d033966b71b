// Shared by every kernel file (prepended by kernels.rs before NVRTC compiles a file): index
// types, the grid-stride loop, and the fixed-order reductions. No headers: NVRTC compiles these
// without the CUDA toolkit's include directory. Every reduction here has a fixed order, so
// every kernel is deterministic (no atomics anywhere).

typedef unsigned int u32;
typedef unsigned long long u64;

// The IGNORE target id (u32::MAX).
#define IGNORE_ID 0xFFFFFFFFu
// The largest head dimension the attention kernels hold in registers (8 values per lane).
#define MAX_HD 256
#define PER_LANE (MAX_HD / 32)
#define NEG_INF (-__int_as_float(0x7f800000))

// Every element index of a 1-D launch, grid-stride.
#define FOR_EACH(i, n) for (u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x; i < (u64)(n); i += (u64)blockDim.x * gridDim.x)

// Sum of `v` over the 32 lanes of a warp; every lane gets the same bits (an xor butterfly adds
// the same pairs in every lane, up to the order of two operands, which is exact).
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum of `v` over a block of 256 threads through `red` (256 doubles of shared memory), in a
// fixed tree; every thread gets the total. Call from every thread of the block.
__device__ __forceinline__ double block_sum256(double v, double* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (u32 s = 128; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    double total = red[0];
    __syncthreads();
    return total;
}

// Maximum of `v` over a block of 256 threads through `red` (256 floats of shared memory).
__device__ __forceinline__ float block_max256(float v, float* red) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (u32 s = 128; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    float total = red[0];
    __syncthreads();
    return total;
}
