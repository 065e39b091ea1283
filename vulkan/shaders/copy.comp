#version 450
// y[r * ys + yo + i] = x[r * xs + xo + i] for i < n, rows r < rows (rows of heads: a head's
// slice copied into another layout, e.g. each head's rotary query into the latent queries).
layout(local_size_x = 64) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_copy (vulkan/vk_impl.h)
    uint rows, n, ys, yo, xs, xo;
} pc;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };

void main() {
    uint i = gl_GlobalInvocationID.x, r = gl_GlobalInvocationID.y + gl_GlobalInvocationID.z * gl_NumWorkGroups.y;
    if (i >= pc.n || r >= pc.rows) return;
    y[r * pc.ys + pc.yo + i] = x[r * pc.xs + pc.xo + i];
}
