#version 450
// Store the pass's keys and values in the cache: token t goes to row info[2t] + info[2t + 1]
// (its sequence's first row plus its position). KV_F16: rows of packed f16 pairs.
layout(local_size_x = 64) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_attn (vulkan/vk_impl.h)
    uint T, n_head, n_head_kv, head_dim, head_dim_v, info_off;
    float scale;
    uint chunk;
} pc;
layout(std430, binding = 0) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer V { float v[]; };
#if KV_F16
layout(std430, binding = 2) writeonly buffer KC { uint kc[]; };
layout(std430, binding = 3) writeonly buffer VC { uint vc[]; };
#else
layout(std430, binding = 2) writeonly buffer KC { float kc[]; };
layout(std430, binding = 3) writeonly buffer VC { float vc[]; };
#endif
layout(std430, binding = 4) readonly buffer I { uint info[]; };

void main() {
    uint t = gl_GlobalInvocationID.y, j = gl_GlobalInvocationID.x;
    uint kw = pc.n_head_kv * pc.head_dim, vw = pc.n_head_kv * pc.head_dim_v;
    uint row = info[pc.info_off + 2u * t] + info[pc.info_off + 2u * t + 1u];
#if KV_F16
    if (2u * j < kw) kc[row * (kw / 2u) + j] = packHalf2x16(vec2(k[t * kw + 2u * j], k[t * kw + 2u * j + 1u]));
    if (2u * j < vw) vc[row * (vw / 2u) + j] = packHalf2x16(vec2(v[t * vw + 2u * j], v[t * vw + 2u * j + 1u]));
#else
    for (uint e = 2u * j; e < 2u * j + 2u; e++) {
        if (e < kw) kc[row * kw + e] = k[t * kw + e];
        if (e < vw) vc[row * vw + e] = v[t * vw + e];
    }
#endif
}
