#version 450
#extension GL_EXT_control_flow_attributes : require
// y[t][r] (+)= W[r] . x[t] (+ bias[r]) for many tokens (prompts): tiles of 64 rows x 64
// tokens, 256 threads of 4 x 4 outputs; the K dimension one 32-element block at a time,
// weights widened to f32 and both tiles stored k-major in shared memory so that each step
// reads one vec4 of weights and one of activations for 16 products. Each output is a
// sequential sum over K, so a token's result does not depend on the other tokens.
// K need not be whole blocks (float weights, rows zero-padded at upload): the activations past
// K read as zero; rows of x that are not 16-byte aligned are read element by element.
layout(local_size_x = 256) in;

layout(push_constant) uniform PC { // struct dsi_vk_pc_matmul (vulkan/vk_impl.h)
    uint K, N, T, x_off, x_ld, y_off, y_ld, scale_word, flags, grp_rows, x_gs, y_gs, row0;
} pc;

layout(std430, binding = 0) readonly buffer W { uint w[]; };
layout(std430, binding = 1) readonly buffer X { vec4 x4[]; }; // x_off, x_ld: multiples of 4
layout(std430, binding = 2) buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer B { float bias[]; };
#include "common.glsl"

shared vec4 ws[32 * 16]; // [k][row / 4]
shared vec4 xs[32 * 16]; // [k][token / 4]

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint g = 0u, rend = pc.N, xo = pc.x_off, yo = pc.y_off, wbase = pc.row0;
    uint r0 = gl_WorkGroupID.x * 64u, t0 = gl_WorkGroupID.y * 64u;
    if ((pc.flags & 4u) != 0u) {
        // experts routed on the device (as in matvec.comp; for rows that are not whole
        // blocks): selection p = workgroup z, T = 1, expert route[p] (binding 3) of a stack of
        // grp_rows-row matrices, x row p / x_gs, y row p
        uint p = gl_WorkGroupID.z;
        wbase = floatBitsToUint(bias[p]) * pc.grp_rows;
        xo = (p / pc.x_gs) * pc.x_ld;
        yo = p * pc.y_ld;
    } else if (pc.grp_rows > 0u) {
        uint tiles = (pc.grp_rows + 63u) / 64u;
        g = gl_WorkGroupID.x / tiles;
        r0 = g * pc.grp_rows + (gl_WorkGroupID.x % tiles) * 64u;
        rend = min(pc.N, (g + 1u) * pc.grp_rows);
        xo += g * pc.x_gs;
        yo += g * pc.y_gs - g * pc.grp_rows;
    }
    uint nb = (pc.K + 31u) / 32u;
    uint tr = (tid & 15u) * 4u, tt = (tid >> 4) * 4u; // this thread's outputs
    uint lr = tid >> 2, le = (tid & 3u) * 8u;          // the weights and inputs it loads
    vec4 acc[4];                                        // [token j] over 4 rows
    [[unroll]] for (uint j = 0; j < 4; j++) acc[j] = vec4(0.0);
    for (uint kb = 0; kb < nb; kb++) {
        vec4 a = vec4(0.0), c = vec4(0.0);
        if (r0 + lr < rend) {
            a = deq4((wbase + r0 + lr) * nb + kb, le);
            c = deq4((wbase + r0 + lr) * nb + kb, le + 4u);
        }
        vec4 u = vec4(0.0), v = vec4(0.0);
        if (t0 + lr < pc.T) {
            uint xr = (t0 + lr) * pc.x_ld + xo, k = kb * 32u + le;
            if (k + 8u <= pc.K && (xr & 3u) == 0u) {
                uint xb = (xr + k) / 4u;
                u = x4[xb];
                v = x4[xb + 1u];
            } else {
                [[unroll]] for (uint i = 0; i < 4; i++) {
                    uint e = xr + k + i;
                    u[i] = k + i < pc.K ? x4[e / 4u][e & 3u] : 0.0;
                    e += 4u;
                    v[i] = k + 4u + i < pc.K ? x4[e / 4u][e & 3u] : 0.0;
                }
            }
        }
        [[unroll]] for (uint i = 0; i < 4; i++) {
            ws[(le + i) * 16u + lr / 4u][lr & 3u] = a[i];
            ws[(le + 4u + i) * 16u + lr / 4u][lr & 3u] = c[i];
            xs[(le + i) * 16u + lr / 4u][lr & 3u] = u[i];
            xs[(le + 4u + i) * 16u + lr / 4u][lr & 3u] = v[i];
        }
        barrier();
        [[unroll]] for (uint k = 0; k < 32; k++) {
            vec4 wv = ws[k * 16u + tr / 4u], xv = xs[k * 16u + tt / 4u];
            [[unroll]] for (uint j = 0; j < 4; j++) acc[j] += wv * xv[j];
        }
        barrier();
    }
    [[unroll]] for (uint j = 0; j < 4; j++) {
        uint t = t0 + tt + j;
        if (t >= pc.T) continue;
        [[unroll]] for (uint i = 0; i < 4; i++) {
            uint r = r0 + tr + i;
            if (r < rend) {
                // flags: bit 0 bias, bit 1 accumulate into y (the residual stream)
                float val = acc[j][i] + ((pc.flags & 1u) != 0u ? bias[r] : 0.0);
                uint o = t * pc.y_ld + yo + r;
                y[o] = (pc.flags & 2u) != 0u ? y[o] + val : val;
            }
        }
    }
}
