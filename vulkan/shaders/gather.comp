#version 450
// y row k = x row info[rows_off + k] for k < n, rows of width floats.
layout(local_size_x = 256) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_gather (vulkan/vk_impl.h)
    uint n, width, rows_off;
} pc;
layout(std430, binding = 0) writeonly buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) readonly buffer I { uint info[]; };

void main() {
    uint i = gl_GlobalInvocationID.x, k = gl_GlobalInvocationID.y;
    if (i >= pc.width || k >= pc.n) return;
    y[k * pc.width + i] = x[info[pc.rows_off + k] * pc.width + i];
}
