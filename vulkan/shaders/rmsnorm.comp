#version 450
// y row t = x row t / sqrt(mean(x^2) + eps) * w; one workgroup per row.
// LAYERNORM: y row t = (x - mean) / sqrt(var + eps) * w + b (biased variance).
layout(local_size_x = 256) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_norm (vulkan/vk_impl.h)
    uint n, T;
    float eps;
    uint ld; // row stride (0: n); elements past n of a row are left alone
} pc;
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
#if LAYERNORM
layout(std430, binding = 3) readonly buffer B { float b[]; };
#endif
shared float part[256];

void main() {
    uint tid = gl_LocalInvocationID.x, r0 = gl_WorkGroupID.x * (pc.ld == 0u ? pc.n : pc.ld);
    float s = 0.0;
#if LAYERNORM
    for (uint i = tid; i < pc.n; i += 256u) s += x[r0 + i];
    part[tid] = s;
    barrier();
    for (uint k = 128u; k > 0u; k >>= 1) {
        if (tid < k) part[tid] += part[tid + k];
        barrier();
    }
    float mean = part[0] / float(pc.n);
    barrier();
    s = 0.0;
    for (uint i = tid; i < pc.n; i += 256u) s += (x[r0 + i] - mean) * (x[r0 + i] - mean);
    part[tid] = s;
    barrier();
    for (uint k = 128u; k > 0u; k >>= 1) {
        if (tid < k) part[tid] += part[tid + k];
        barrier();
    }
    float inv = inversesqrt(part[0] / float(pc.n) + pc.eps);
    for (uint i = tid; i < pc.n; i += 256u) y[r0 + i] = (x[r0 + i] - mean) * inv * w[i] + b[i];
    return;
#endif
    for (uint i = tid; i < pc.n; i += 256u) s += x[r0 + i] * x[r0 + i];
    part[tid] = s;
    barrier();
    for (uint k = 128u; k > 0u; k >>= 1) {
        if (tid < k) part[tid] += part[tid + k];
        barrier();
    }
    float scale = inversesqrt(part[0] / float(pc.n) + pc.eps);
    for (uint i = tid; i < pc.n; i += 256u) y[r0 + i] = (x[r0 + i] * scale) * w[i];
}
