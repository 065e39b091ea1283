#version 450
// op 0: y += x; op 1: y = silu(y) * x (SwiGLU); op 2: y = gelu(y), tanh approximation. n elements.
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
    if (pc.op == 2u) {
        // tanh(u) = 1 - 2 / (e^(2u) + 1), as the CPU's dsi_op_gelu_tanh (GLSL's tanh may
        // overflow for large |u| on some drivers)
        float u = 0.7978845608028654 * (g + 0.044715 * g * g * g);
        y[i] = 0.5 * g * (2.0 - 2.0 / (exp(min(2.0 * u, 88.0)) + 1.0));
        return;
    }
    y[i] = pc.op == 0u ? g + x[i] : g / (1.0 + exp(-g)) * x[i];
}
