#version 450
// The attention of token t (workgroup y), head h (workgroup x) from the chunk partials of
// attention.comp: out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s, over
// the pc.chunk splits in order (an empty split has m = -inf, l = 0 and adds exact zeros).
layout(local_size_x = 64) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_attn (vulkan/vk_impl.h); chunk = splits
    uint T, n_head, n_head_kv, head_dim, head_dim_v, info_off;
    float scale;
    uint chunk;
} pc;
layout(std430, binding = 0) readonly buffer P { float part[]; };
layout(std430, binding = 1) writeonly buffer O { float o[]; };

void main() {
    uint h = gl_WorkGroupID.x, t = gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    uint S = pc.chunk, stride = pc.head_dim_v + 2u;
    uint p0 = (t * pc.n_head + h) * S * stride;
    float M = -1.0 / 0.0;
    for (uint s = 0; s < S; s++) M = max(M, part[p0 + s * stride]);
    float L = 0.0;
    for (uint s = 0; s < S; s++) {
        float m = part[p0 + s * stride];
        L += m == -1.0 / 0.0 ? 0.0 : part[p0 + s * stride + 1u] * exp(m - M);
    }
    for (uint d = tid; d < pc.head_dim_v; d += 64u) {
        float a = 0.0;
        for (uint s = 0; s < S; s++) {
            float m = part[p0 + s * stride];
            if (m != -1.0 / 0.0) a += part[p0 + s * stride + 2u + d] * exp(m - M);
        }
        o[(t * pc.n_head + h) * pc.head_dim_v + d] = a / L;
    }
}
