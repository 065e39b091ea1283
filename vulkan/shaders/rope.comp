#version 450
// Rotary embedding in place: x [T][n_head * head_dim], dimensions [dim0, dim0 + n_dims) of each head, with
// the host's cos/sin table (core/backend.h dsi_rope_table) at word tab_off of the info
// buffer: [T][n_dims / 2] cos, then sin.
layout(local_size_x = 64) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_rope (vulkan/vk_impl.h)
    uint T, n_head, head_dim, n_dims, mode, tab_off, dim0;
} pc;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer I { uint info[]; };

void main() {
    uint half_ = pc.n_dims / 2u;
    uint i = gl_GlobalInvocationID.x, h = gl_GlobalInvocationID.y, t = gl_GlobalInvocationID.z;
    if (i >= half_ || h >= pc.n_head) return;
    uint a = pc.mode == 0u ? i : 2u * i, b = pc.mode == 0u ? i + half_ : 2u * i + 1u;
    uint base = (t * pc.n_head + h) * pc.head_dim + pc.dim0;
    uint tab = pc.tab_off + t * pc.n_dims;
    float c = uintBitsToFloat(info[tab + i]), s = uintBitsToFloat(info[tab + half_ + i]);
    float x0 = x[base + a], x1 = x[base + b];
    x[base + a] = x0 * c - x1 * s;
    x[base + b] = x0 * s + x1 * c;
}
