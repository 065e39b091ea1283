#version 450
#extension GL_EXT_control_flow_attributes : require
// y[t][r] = W[row0 + r] . x[t] (+ bias[r]) for few tokens (decode). Every token's sum takes the same
// order whatever T is, so a token's result does not depend on the others of its pass.
//   SUBGROUP: one subgroup per row, 4 subgroups per workgroup (local size 4 x the subgroup
//     size, set at pipeline creation); 4 or 8 lanes per 32-element block, so that a subgroup
//     reads consecutive weights and activations; subgroupAdd at the end. (Measured on an
//     H200: 4 rows per subgroup starved it of warps, 45 us a matrix instead of 12; unrolling
//     4 steps and 8 lanes per Q4_0 block, each using half of the word it loads: 21 us.)
//   else: 32 lanes per row, 4 rows per workgroup, each lane whole blocks; partial sums added
//     in lane order through shared memory.
#if SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
layout(local_size_x_id = 0) in;
#else
layout(local_size_x = 128) in;
#endif

layout(push_constant) uniform PC { // struct dsi_vk_pc_matmul (vulkan/vk_impl.h)
    uint K, N, T, x_off, x_ld, y_off, y_ld, scale_word, flags, grp_rows, x_gs, y_gs, row0;
} pc;

layout(std430, binding = 0) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer X { vec4 x4[]; }; // x_off, x_ld: multiples of 4
layout(std430, binding = 2) buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer B { float bias[]; };
#include "common.glsl"

// Per-head products (grp_rows > 0): row r belongs to group g = r / grp_rows, which reads x
// from x_off + g * x_gs and writes y at y_off + g * y_gs + r % grp_rows.
// flags bit 2, experts routed on the device (T = 1 per workgroup z = the selection p): the
// expert e = route[p] (binding 3, words) of a stack of grp_rows-row matrices; x row p / x_gs
// (x_gs selections per input row), y row p; row0, x_off, y_off unused.
bool gathered() { return (pc.flags & 4u) != 0u; }
uint grp(uint r) { return pc.grp_rows == 0u || gathered() ? 0u : r / pc.grp_rows; }
uint x_at(uint r) {
    return gathered() ? (gl_WorkGroupID.z / pc.x_gs) * pc.x_ld : pc.x_off + grp(r) * pc.x_gs;
}
uint w_row(uint r) {
    return gathered() ? floatBitsToUint(bias[gl_WorkGroupID.z]) * pc.grp_rows + r : pc.row0 + r;
}

// flags bit 1: accumulate into y (the residual stream) instead of overwriting it
void store(uint t, uint r, float v) {
    uint g = grp(r);
    uint i = gathered() ? gl_WorkGroupID.z * pc.y_ld + r
                        : t * pc.y_ld + pc.y_off + g * pc.y_gs + r - g * pc.grp_rows;
    y[i] = (pc.flags & 2u) != 0u ? y[i] + v : v;
}

#define TT 4

#if SUBGROUP
// UNR (specialization constant 1, 1..4; the host's vk->mv_unroll): steps of the row loop
// whose loads go out together. On the H200, 4 took R1-Qwen-1.5B Q4_0 decode from 289 to 317
// t/s (the quantized products 12.2 -> 10.2 us each). Tried and slower there: one lane per
// Q4_0/Q8_0 block with 16-byte loads (258 t/s: each lane's 128 bytes of x are not coalesced
// across the subgroup), and that with a row's blocks split over a workgroup's 4 subgroups
// (217 t/s).
layout(constant_id = 1) const uint UNR = 1;
// LPB lanes per 32-element block. Q4_0: 4 lanes, each one word of quants (elements 4q..4q+3
// in its low nibbles, 16+4q.. in its high ones); the other types: 8 lanes of 4 elements.
#if WTYPE == 2
#define LPB 4u
#else
#define LPB 8u
#endif
void main() {
    uint lane = gl_SubgroupInvocationID;
    uint r = gl_WorkGroupID.x * gl_NumSubgroups + gl_SubgroupID;
    uint nb = pc.K / 32u, per = gl_SubgroupSize / LPB; // blocks per step
    uint q = lane % LPB, kb0 = lane / LPB;
    for (uint t0 = 0; t0 < pc.T; t0 += TT) {
        float acc[TT];
        [[unroll]] for (uint t = 0; t < TT; t++) acc[t] = 0.0;
        if (r < pc.N) {
            uint wb = w_row(r) * nb, xa = x_at(r);
            uint kb = kb0;
            // UNR steps at a time, every load issued before the sums; the same order of
            // additions as one step at a time
            if (UNR > 1u)
                for (; kb + (UNR - 1u) * per < nb; kb += UNR * per) {
                    vec4 lo[4];
#if WTYPE == 2
                    vec4 hi[4];
#endif
                    [[unroll]] for (uint u = 0; u < 4u; u++)
                        if (u < UNR) {
                            lo[u] = deq4(wb + kb + u * per, 4u * q);
#if WTYPE == 2
                            hi[u] = deq4(wb + kb + u * per, 16u + 4u * q);
#endif
                        }
                    [[unroll]] for (uint u = 0; u < 4u; u++)
                        if (u < UNR)
                            [[unroll]] for (uint t = 0; t < TT; t++)
                                if (t0 + t < pc.T) {
                                    uint xb = ((t0 + t) * pc.x_ld + xa + (kb + u * per) * 32u) / 4u + q;
                                    float s = dot(lo[u], x4[xb]);
#if WTYPE == 2
                                    s += dot(hi[u], x4[xb + 4u]);
#endif
                                    acc[t] += s;
                                }
                }
            for (; kb < nb; kb += per) {
                vec4 lo = deq4(wb + kb, 4u * q);
#if WTYPE == 2
                vec4 hi = deq4(wb + kb, 16u + 4u * q);
#endif
                [[unroll]] for (uint t = 0; t < TT; t++)
                    if (t0 + t < pc.T) {
                        uint xb = ((t0 + t) * pc.x_ld + xa + kb * 32u) / 4u + q;
                        float s = dot(lo, x4[xb]);
#if WTYPE == 2
                        s += dot(hi, x4[xb + 4u]);
#endif
                        acc[t] += s;
                    }
            }
        }
        [[unroll]] for (uint t = 0; t < TT; t++) acc[t] = subgroupAdd(acc[t]);
        if (lane == 0u && r < pc.N) {
            float b = (pc.flags & 1u) != 0u ? bias[r] : 0.0;
            [[unroll]] for (uint t = 0; t < TT; t++)
                if (t0 + t < pc.T) store(t0 + t, r, acc[t] + b);
        }
    }
}
#else
shared float part[128 * TT];

void main() {
    uint lid = gl_LocalInvocationID.x, lane = lid & 31u, rl = lid >> 5;
    uint r = gl_WorkGroupID.x * 4u + rl;
    uint nb = pc.K / 32u;
    for (uint t0 = 0; t0 < pc.T; t0 += TT) {
        float acc[TT];
        [[unroll]] for (uint t = 0; t < TT; t++) acc[t] = 0.0;
        if (r < pc.N) {
            uint wb = w_row(r) * nb, xa = x_at(r);
            for (uint kb = lane; kb < nb; kb += 32u) {
                vec4 v[8];
                [[unroll]] for (uint i = 0; i < 8; i++) v[i] = deq4(wb + kb, 4u * i);
                [[unroll]] for (uint t = 0; t < TT; t++) {
                    if (t0 + t < pc.T) {
                        uint xb = ((t0 + t) * pc.x_ld + xa + kb * 32u) / 4u;
                        float s = 0.0;
                        [[unroll]] for (uint i = 0; i < 8; i++) s += dot(v[i], x4[xb + i]);
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
            store(t0 + lane, r, s + ((pc.flags & 1u) != 0u ? bias[r] : 0.0));
        }
        barrier();
    }
}
#endif
