#version 450
// MoE routing on the device, token t = workgroup x, as src/models/moe.c dsi_moe_route: softmax
// (or sigmoid) of the router logits, selection scores = probabilities + bias, the best
// n_group_used groups kept when grouped (a group's score: its best expert, or its best two
// with sigmoid gating), the k best experts (ties to the lowest index), weights renormalized
// (flags bit 1) and scaled. Writes, for selection p = t * k + j: route[p] = expert,
// route[R + p] = p (its slot for moe_combine.comp), route[2R + p] = weight bits.
layout(local_size_x = 1) in;
layout(push_constant) uniform PC { // struct dsi_vk_pc_route (vulkan/vk_impl.h)
    uint X, k, G, Gu, flags, R;
    float scale;
} pc;
layout(std430, binding = 0) readonly buffer L { float logits[]; };
layout(std430, binding = 1) readonly buffer B { float sbias[]; };
layout(std430, binding = 2) writeonly buffer R { uint route[]; };

#define MAXX 256
#define NONE (-1.0 / 0.0)
float p[MAXX], choice[MAXX];

// the index of the best value not yet taken (NONE: taken or excluded); ties: the lowest index
int arg_best(uint n) {
    int b = -1;
    for (uint i = 0; i < n; i++)
        if (choice[i] != NONE && (b < 0 || choice[i] > choice[b])) b = int(i);
    return b;
}

void main() {
    uint t = gl_WorkGroupID.x, X = pc.X;
    bool sigm = (pc.flags & 1u) != 0u, norm = (pc.flags & 2u) != 0u, has_bias = (pc.flags & 4u) != 0u;
    if (sigm) {
        for (uint i = 0; i < X; i++) p[i] = 1.0 / (1.0 + exp(-logits[t * X + i]));
    } else {
        float mx = logits[t * X], sum = 0.0;
        for (uint i = 1; i < X; i++) mx = max(mx, logits[t * X + i]);
        for (uint i = 0; i < X; i++) {
            p[i] = exp(logits[t * X + i] - mx);
            sum += p[i];
        }
        for (uint i = 0; i < X; i++) p[i] /= sum;
    }
    for (uint i = 0; i < X; i++) choice[i] = p[i] + (has_bias ? sbias[i] : 0.0);
    if (pc.G > 1u && pc.Gu < pc.G) {
        uint gs = X / pc.G;
        float gscore[64];
        for (uint g = 0; g < pc.G; g++) {
            float b1 = NONE, b2 = NONE;
            for (uint i = 0; i < gs; i++) {
                float c = choice[g * gs + i];
                if (c > b1) {
                    b2 = b1;
                    b1 = c;
                } else if (c > b2) {
                    b2 = c;
                }
            }
            gscore[g] = sigm && gs > 1u ? b1 + b2 : b1;
        }
        bool kept[64];
        for (uint g = 0; g < pc.G; g++) kept[g] = false;
        for (uint j = 0; j < pc.Gu; j++) {
            int b = -1;
            for (uint g = 0; g < pc.G; g++)
                if (gscore[g] != NONE && (b < 0 || gscore[g] > gscore[b])) b = int(g);
            kept[b] = true;
            gscore[b] = NONE;
        }
        for (uint g = 0; g < pc.G; g++)
            if (!kept[g])
                for (uint i = 0; i < gs; i++) choice[g * gs + i] = NONE;
    }
    uint sel[16];
    float w[16], sum = 0.0;
    for (uint j = 0; j < pc.k; j++) {
        int e = arg_best(X);
        if (e < 0) e = 0;
        sel[j] = uint(e);
        choice[e] = NONE;
        w[j] = p[e];
        sum += w[j];
    }
    for (uint j = 0; j < pc.k; j++) {
        float wj = norm ? w[j] / (sum + 1e-20) : w[j];
        uint s = t * pc.k + j;
        route[s] = sel[j];
        route[pc.R + s] = s;
        route[2u * pc.R + s] = floatBitsToUint(wj * pc.scale);
    }
}
