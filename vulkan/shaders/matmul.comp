#version 450
#extension GL_EXT_control_flow_attributes : require
// y[t][r] = W[r] . x[t] (+ bias[r]) for many tokens: tiles of 64 rows x 32 tokens, 256
// threads of 4 x 2 outputs, the K dimension a 32-element block at a time through shared
// memory (weights widened to f32). Each output is a sequential sum over K, so a token's
// result does not depend on the other tokens of the pass.
layout(local_size_x = 256) in;

layout(push_constant) uniform PC { // struct dsi_vk_pc_matmul (vulkan/vk_impl.h)
    uint K, N, T, x_off, x_ld, y_off, y_ld, scale_word, has_bias;
} pc;

layout(std430, binding = 0) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(std430, binding = 2) buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer B { float bias[]; };
#include "common.glsl"

shared float ws[64][33];
shared float xs[32][33];

// weights e0 .. e0 + 7 of block b into v
void part8(uint b, uint e0, out float v[8]) {
    vec4 a = deq4(b, e0), c = deq4(b, e0 + 4u);
    [[unroll]] for (uint i = 0; i < 4; i++) v[i] = a[i], v[i + 4] = c[i];
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint r0 = gl_WorkGroupID.x * 64u, t0 = gl_WorkGroupID.y * 32u;
    uint nb = pc.K / 32u;
    uint tr = (tid & 15u) * 4u, tt = (tid >> 4) * 2u; // this thread's outputs
    float acc[4][2];
    [[unroll]] for (uint i = 0; i < 4; i++) acc[i][0] = acc[i][1] = 0.0;
    uint lr = tid >> 2, le = (tid & 3u) * 8u;          // weights this thread loads
    uint xt = tid >> 3, xe = (tid & 7u) * 4u;          // inputs this thread loads
    for (uint kb = 0; kb < nb; kb++) {
        float v[8];
        if (r0 + lr < pc.N) part8((r0 + lr) * nb + kb, le, v);
        else [[unroll]] for (uint i = 0; i < 8; i++) v[i] = 0.0;
        [[unroll]] for (uint i = 0; i < 8; i++) ws[lr][le + i] = v[i];
        [[unroll]] for (uint i = 0; i < 4; i++)
            xs[xt][xe + i] = t0 + xt < pc.T ? x[(t0 + xt) * pc.x_ld + pc.x_off + kb * 32u + xe + i] : 0.0;
        barrier();
        [[unroll]] for (uint i = 0; i < 4; i++)
            [[unroll]] for (uint j = 0; j < 2; j++) {
                float s = 0.0;
                [[unroll]] for (uint k = 0; k < 32; k++) s += ws[tr + i][k] * xs[tt + j][k];
                acc[i][j] += s;
            }
        barrier();
    }
    [[unroll]] for (uint i = 0; i < 4; i++)
        [[unroll]] for (uint j = 0; j < 2; j++) {
            uint r = r0 + tr + i, t = t0 + tt + j;
            if (r < pc.N && t < pc.T) {
                // has_bias bit 1: accumulate into y (the residual stream)
                float v = acc[i][j] + ((pc.has_bias & 1u) != 0u ? bias[r] : 0.0);
                uint o = t * pc.y_ld + pc.y_off + r;
                y[o] = (pc.has_bias & 2u) != 0u ? y[o] + v : v;
            }
        }
}
