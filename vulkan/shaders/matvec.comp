#version 450
#extension GL_EXT_control_flow_attributes : require
// y[t][r] = W[r] . x[t] (+ bias[r]) for few tokens: 32 lanes per row, 4 rows per workgroup,
// each lane a stride of the row's 32-element blocks, then the 32 partials summed in order. Every
// token's sum takes the same order whatever T is.
#include "common.glsl"
#if SUBGROUP
// One subgroup per row (4 per workgroup; the local size is 4 x the device's subgroup size,
// set at pipeline creation), lanes striding the row's blocks, reduced with subgroupAdd: no
// shared memory, no barriers.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
layout(local_size_x_id = 0) in;
#else
layout(local_size_x = 128) in;
#endif

layout(push_constant) uniform PC { // struct dsi_vk_pc_matmul (vulkan/vk_impl.h)
    uint K, N, T, x_off, x_ld, y_off, y_ld, scale_word, has_bias;
} pc;

#if WTYPE == 0
layout(std430, binding = 0) readonly buffer W { float w[]; };
#else
layout(std430, binding = 0) readonly buffer W { uint w[]; };
#endif
#if SUBGROUP
layout(std430, binding = 1) readonly buffer X { vec4 x4[]; }; // x_off, x_ld: multiples of 4
#else
layout(std430, binding = 1) readonly buffer X { float x[]; };
#endif
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer B { float bias[]; };

#define TT 4
#if !SUBGROUP
shared float part[128 * TT];
#endif

#if !SUBGROUP
// the 32 weights of block b (row-major block index) into v
void block(uint b, out float v[32]) {
#if WTYPE == 0
    [[unroll]] for (uint i = 0; i < 32; i++) v[i] = w[b * 32 + i];
#elif WTYPE == 1
    [[unroll]] for (uint i = 0; i < 16; i++) {
        vec2 p = unpackHalf2x16(w[b * 16 + i]);
        v[2 * i] = p.x;
        v[2 * i + 1] = p.y;
    }
#elif WTYPE == 2
    float d = half_at(w[pc.scale_word + b / 2], b & 1u);
    [[unroll]] for (uint i = 0; i < 4; i++) {
        uint q = w[b * 4 + i];
        [[unroll]] for (uint j = 0; j < 4; j++) {
            uint byte = (q >> (8 * j)) & 0xffu;
            v[4 * i + j] = d * (float(byte & 15u) - 8.0);
            v[4 * i + j + 16] = d * (float(byte >> 4) - 8.0);
        }
    }
#elif WTYPE == 3
    float d = half_at(w[pc.scale_word + b / 2], b & 1u);
    [[unroll]] for (uint i = 0; i < 8; i++) {
        uint q = w[b * 8 + i];
        [[unroll]] for (uint j = 0; j < 4; j++) v[4 * i + j] = d * float(int(q << (24 - 8 * j)) >> 24);
    }
#endif
}
#endif

#if SUBGROUP
// Lanes split each 32-element block: LPB lanes per block, each lane E = 32 / LPB elements
// read as one or two vec4 of x, so that a subgroup reads consecutive weights and
// consecutive activations (coalesced); subgroupAdd at the end.
#if WTYPE == 2
#define LPB 4u
#else
#define LPB 8u
#endif
// weights q*4 .. q*4+3 (and, for Q4_0, 16+q*4 .. 16+q*4+3) of block b into lo (hi)
void part(uint b, uint q, out vec4 lo, out vec4 hi) {
    hi = vec4(0.0);
#if WTYPE == 0
    lo = vec4(w[b * 32u + 4u * q], w[b * 32u + 4u * q + 1u], w[b * 32u + 4u * q + 2u], w[b * 32u + 4u * q + 3u]);
#elif WTYPE == 1
    lo = vec4(unpackHalf2x16(w[b * 16u + 2u * q]), unpackHalf2x16(w[b * 16u + 2u * q + 1u]));
#elif WTYPE == 2
    float d = half_at(w[pc.scale_word + b / 2u], b & 1u);
    uint u = w[b * 4u + q];
    lo = d * (vec4(u & 15u, (u >> 8) & 15u, (u >> 16) & 15u, (u >> 24) & 15u) - 8.0);
    hi = d * (vec4((u >> 4) & 15u, (u >> 12) & 15u, (u >> 20) & 15u, u >> 28) - 8.0);
#elif WTYPE == 3
    float d = half_at(w[pc.scale_word + b / 2u], b & 1u);
    uint u = w[b * 8u + q];
    lo = d * vec4(int(u << 24) >> 24, int(u << 16) >> 24, int(u << 8) >> 24, int(u) >> 24);
#endif
}

void main() {
    uint lane = gl_SubgroupInvocationID, r = gl_WorkGroupID.x * 4u + gl_SubgroupID;
    uint nb = pc.K / 32u, per = gl_SubgroupSize / LPB; // blocks per step
    uint q = lane % LPB, kb0 = lane / LPB;
    for (uint t0 = 0; t0 < pc.T; t0 += TT) {
        float acc[TT];
        [[unroll]] for (uint t = 0; t < TT; t++) acc[t] = 0.0;
        if (r < pc.N) {
            for (uint kb = kb0; kb < nb; kb += per) {
                vec4 lo, hi;
                part(r * nb + kb, q, lo, hi);
                [[unroll]] for (uint t = 0; t < TT; t++) {
                    if (t0 + t < pc.T) {
                        uint xb = ((t0 + t) * pc.x_ld + pc.x_off + kb * 32u) / 4u + q;
                        float s = dot(lo, x4[xb]);
#if WTYPE == 2
                        s += dot(hi, x4[xb + 4u]);
#endif
                        acc[t] += s;
                    }
                }
            }
        }
        [[unroll]] for (uint t = 0; t < TT; t++) acc[t] = subgroupAdd(acc[t]);
        if (lane == 0u && r < pc.N) {
            float b = pc.has_bias != 0u ? bias[r] : 0.0;
            [[unroll]] for (uint t = 0; t < TT; t++)
                if (t0 + t < pc.T) y[(t0 + t) * pc.y_ld + pc.y_off + r] = acc[t] + b;
        }
    }
}
#else
void main() {
    uint lid = gl_LocalInvocationID.x, lane = lid & 31u, rl = lid >> 5;
    uint r = gl_WorkGroupID.x * 4u + rl;
    uint nb = pc.K / 32u;
    for (uint t0 = 0; t0 < pc.T; t0 += TT) {
        float acc[TT];
        [[unroll]] for (uint t = 0; t < TT; t++) acc[t] = 0.0;
        if (r < pc.N) {
            for (uint kb = lane; kb < nb; kb += 32u) {
                float v[32];
                block(r * nb + kb, v);
                [[unroll]] for (uint t = 0; t < TT; t++) {
                    if (t0 + t < pc.T) {
                        uint xb = (t0 + t) * pc.x_ld + pc.x_off + kb * 32u;
                        float s = 0.0;
                        [[unroll]] for (uint i = 0; i < 32; i++) s += v[i] * x[xb + i];
                        acc[t] += s;
                    }
                }
            }
        }
        [[unroll]] for (uint t = 0; t < TT; t++) part[t * 128u + lid] = acc[t];
        barrier();
        // lane t of the row sums token t's 32 partials in lane order
        if (lane < TT && t0 + lane < pc.T && r < pc.N) {
            float s = 0.0;
            for (uint i = 0; i < 32u; i++) s += part[lane * 128u + rl * 32u + i];
            y[(t0 + lane) * pc.y_ld + pc.y_off + r] = s + (pc.has_bias != 0u ? bias[r] : 0.0);
        }
        barrier();
    }
}
#endif
