#version 450
// op 0: y += x; op 1: y = silu(y) * x (SwiGLU). n elements.
layout(local_size_x = 256) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_eltwise (vulkan/vk_impl.h)
    uint n, op;
} pc;
layout(std430, binding = 0) buffer Y { float y[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * 256u;
    if (i >= pc.n) return;
    float g = y[i];
    y[i] = pc.op == 0u ? g + x[i] : g / (1.0 + exp(-g)) * x[i];
}
