#version 450
// The routed experts' sum: x[t][i] += w[s] * ey[s][i] for s = slot[t * k + j], j = 0 .. k - 1
// in that order (the CPU's), from the routing the host wrote at words slot_off (slots of each
// token's selections) and w_off (weights by slot) of the route buffer.
layout(local_size_x = 256) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_moe (vulkan/vk_impl.h)
    uint T, k, n, slot_off, w_off;
} pc;
layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer EY { float ey[]; };
layout(std430, binding = 2) readonly buffer R { uint route[]; };

void main() {
    uint i = gl_GlobalInvocationID.x, t = gl_GlobalInvocationID.y;
    if (i >= pc.n || t >= pc.T) return;
    float acc = x[t * pc.n + i];
    for (uint j = 0; j < pc.k; j++) {
        uint s = route[pc.slot_off + t * pc.k + j];
        acc += uintBitsToFloat(route[pc.w_off + s]) * ey[s * pc.n + i];
    }
    x[t * pc.n + i] = acc;
}
