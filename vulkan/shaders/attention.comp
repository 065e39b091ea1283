#version 450
#extension GL_EXT_control_flow_attributes : require
// Causal attention of query token t (workgroup y), head h (workgroup x) against its
// sequence's cache rows [base, base + pos]: 64 keys at a time, one score per thread, online
// softmax; each thread accumulates head_dim_v / 64 output dimensions.
// chunk > 0 (decode): workgroup z takes only keys [z * chunk, (z + 1) * chunk) and writes its
// unnormalized partial (max, sum, acc[head_dim_v]) for attn_combine.comp.
// SHARED_V (latent attention): the values are the first head_dim_v elements of each key
// (binding 2 is the key cache too); MAXD: the widest head (256, or 576 for MLA).
layout(local_size_x = 64) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_attn (vulkan/vk_impl.h)
    uint T, n_head, n_head_kv, head_dim, head_dim_v, info_off;
    float scale;
    uint chunk;
} pc;
layout(std430, binding = 0) readonly buffer Q { float q[]; };
#if KV_F16
layout(std430, binding = 1) readonly buffer KC { uvec4 kc4[]; }; // 8 halves: head_dim % 8 == 0
layout(std430, binding = 2) readonly buffer VC { uint vc[]; };
#else
layout(std430, binding = 1) readonly buffer KC { vec4 kc4[]; };  // head_dim % 4 == 0
layout(std430, binding = 2) readonly buffer VC { float vc[]; };
#endif
layout(std430, binding = 3) writeonly buffer O { float o[]; };
layout(std430, binding = 4) readonly buffer I { uint info[]; };

#ifndef MAXD
#define MAXD 256
#endif
shared float qs[MAXD];
shared float p[64];
shared float red[64];

// q . key, the key at element e0 of cache row `row` (rows of kw elements)
float qk(uint row, uint kw, uint e0) {
    float s = 0.0;
#if KV_F16
    uint base = (row * kw + e0) / 8u;
    for (uint e = 0; e < pc.head_dim; e += 8u) {
        uvec4 u = kc4[base + e / 8u];
        s += dot(vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y)), vec4(qs[e], qs[e + 1u], qs[e + 2u], qs[e + 3u]));
        s += dot(vec4(unpackHalf2x16(u.z), unpackHalf2x16(u.w)), vec4(qs[e + 4u], qs[e + 5u], qs[e + 6u], qs[e + 7u]));
    }
#else
    uint base = (row * kw + e0) / 4u;
    for (uint e = 0; e < pc.head_dim; e += 4u)
        s += dot(kc4[base + e / 4u], vec4(qs[e], qs[e + 1u], qs[e + 2u], qs[e + 3u]));
#endif
    return s;
}
float vval(uint row, uint vw, uint e) {
#if SHARED_V
    vw = pc.n_head_kv * pc.head_dim; // rows of keys; e < head_dim_v is within head 0's key
#endif
#if KV_F16
    return unpackHalf2x16(vc[row * (vw / 2u) + e / 2u])[e & 1u];
#else
    return vc[row * vw + e];
#endif
}

void main() {
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    uint G = pc.n_head / pc.n_head_kv, kvh = h / G;
    uint kw = pc.n_head_kv * pc.head_dim, vw = pc.n_head_kv * pc.head_dim_v;
    uint base = info[pc.info_off + 2u * t], n = info[pc.info_off + 2u * t + 1u] + 1u;
    uint j_begin = 0u;
    if (pc.chunk > 0u) {
        j_begin = min(n, gl_WorkGroupID.z * pc.chunk);
        n = min(n, j_begin + pc.chunk);
    }
    for (uint e = tid; e < pc.head_dim; e += 64u) qs[e] = q[(t * pc.n_head + h) * pc.head_dim + e];
    barrier();
    float m = -1.0 / 0.0, l = 0.0;
    float acc[MAXD / 64];
    [[unroll]] for (uint i = 0; i < MAXD / 64; i++) acc[i] = 0.0;
    for (uint j0 = j_begin; j0 < n; j0 += 64u) {
        uint j = j0 + tid;
        float s = -1.0 / 0.0;
        if (j < n) {
            s = qk(base + j, kw, kvh * pc.head_dim) * pc.scale;
        }
        red[tid] = s;
        barrier();
        for (uint k = 32u; k > 0u; k >>= 1) {
            if (tid < k) red[tid] = max(red[tid], red[tid + k]);
            barrier();
        }
        float mn = max(m, red[0]);
        barrier();
        float pj = j < n ? exp(s - mn) : 0.0;
        p[tid] = pj;
        red[tid] = pj;
        barrier();
        for (uint k = 32u; k > 0u; k >>= 1) {
            if (tid < k) red[tid] += red[tid + k];
            barrier();
        }
        float c = exp(m - mn);
        l = l * c + red[0];
        m = mn;
        uint nj = min(64u, n - j0);
        [[unroll]] for (uint i = 0; i < MAXD / 64; i++) {
            uint d = tid + 64u * i;
            if (d < pc.head_dim_v) {
                float a = acc[i] * c;
                for (uint jj = 0; jj < nj; jj++) a += p[jj] * vval(base + j0 + jj, vw, kvh * pc.head_dim_v + d);
                acc[i] = a;
            }
        }
        barrier();
    }
    if (pc.chunk > 0u) { // partial: [max, sum, acc...] per (token, head, split)
        uint po = ((t * pc.n_head + h) * gl_NumWorkGroups.z + gl_WorkGroupID.z) * (pc.head_dim_v + 2u);
        if (tid == 0u) {
            o[po] = m;
            o[po + 1u] = l;
        }
        [[unroll]] for (uint i = 0; i < MAXD / 64; i++) {
            uint d = tid + 64u * i;
            if (d < pc.head_dim_v) o[po + 2u + d] = acc[i];
        }
        return;
    }
    [[unroll]] for (uint i = 0; i < MAXD / 64; i++) {
        uint d = tid + 64u * i;
        if (d < pc.head_dim_v) o[(t * pc.n_head + h) * pc.head_dim_v + d] = acc[i] / l;
    }
}
