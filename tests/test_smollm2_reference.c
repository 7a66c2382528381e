/* tests/test_smollm2_reference.c: the real-model conformance check. With
 * RFT_SMOLLM2_GGUF pointing at SmolLM2-135M-Instruct.Q4_1.gguf
 * (tools/fetch_smollm2.sh; else skipped), imports it with model_import and
 * compares against transformers running the same dequantised weights exported
 * by rft (tests/fixtures/smollm2_ref.json, made by tools/ref_smollm2.py), for
 * 3 plain-text and 2 chat prompts:
 *   - token ids of our tokenizer / chat template == transformers' tokenizer /
 *     apply_chat_template(add_generation_prompt=True), and the rendered chat text;
 *   - next-token logits at the last position (one packed forward of all 5
 *     prompts, then model_logits): top-50 and 200 probe ids, the full vector's
 *     mean / std / logsumexp, and the full vector of one prompt, all within
 *     1e-4 of max |logit| (relative to the vector's scale; see TOL), same argmax;
 *   - the rollout engine at temperature 0: 32 tokens per prompt (all 5 in one
 *     batch, no stop ids) identical to generate(do_sample=False), their decoded
 *     text identical to tokenizer.decode; and for the chat prompts with the
 *     chat stop ids, each completion ends exactly at the reference's first
 *     eos / <|im_end|>.
 * RFT_SMOLLM2_REF overrides the fixture path (for checking that a perturbed
 * fixture fails).
 * Per-prompt errors are printed. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "convert.h"
#include "rollout.h"
#include "util.h"

#define FIXTURE "tests/fixtures/smollm2_ref.json"
/* max |ours - ref| / max |ref|. The issue asks for 1e-3; fp32 on both sides
   measures ~2e-6 here, and 1e-4 still catches subtle config slips that 1e-3
   lets through (rms_eps 1e-6 instead of 1e-5 moves these logits by 3.4e-4;
   Q/K rows left in llama.cpp's order: 0.17; rope_theta 1e4 instead of 1e5: 0.02-0.17). */
#define TOL 1e-4
#define MAX_PROMPTS 8

#include "check.h"

/* standard base64 -> bytes; returns the byte count or -1 on a bad character */
static long b64_decode(const char *s, unsigned char *out, size_t cap) {
    static const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *s && *s != '='; s++) {
        const char *p = strchr(A, *s);
        if (!p) return -1;
        acc = (acc << 6) | (unsigned)(p - A);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap) return -1;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)n;
}

/* ids from a JSON array of integers into a malloc'ed buffer */
static int32_t *json_ids(json_t *a, int *n) {
    *n = (int)json_array_size(a);
    int32_t *v = malloc((*n + 1) * sizeof(int32_t));
    for (int i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return v;
}

static void print_ids_diff(const char *what, const int32_t *a, int na, const int32_t *b, int nb) {
    int j = 0;
    while (j < na && j < nb && a[j] == b[j]) j++;
    fprintf(stderr, "    %s: first difference at %d (ours %d ids, ref %d): ours", what, j, na, nb);
    for (int k = j; k < na && k < j + 6; k++) fprintf(stderr, " %d", a[k]);
    fprintf(stderr, " | ref");
    for (int k = j; k < nb && k < j + 6; k++) fprintf(stderr, " %d", b[k]);
    fprintf(stderr, "\n");
}

int main(void) {
    const char *path = getenv("RFT_SMOLLM2_GGUF");
    if (!path || !*path || access(path, R_OK)) {
        printf("skipped: set RFT_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf "
               "(export RFT_SMOLLM2_GGUF=$(tools/fetch_smollm2.sh))\n");
        return 77;
    }
    char err[1024];
    json_error_t je;
    const char *fixture = getenv("RFT_SMOLLM2_REF") ? getenv("RFT_SMOLLM2_REF") : FIXTURE;
    json_t *ref = json_load_file(fixture, 0, &je);
    if (!ref) {
        fprintf(stderr, "FAIL %s:%d: %s\n", fixture, je.line, je.text);
        return 1;
    }
    json_t *prs = json_object_get(ref, "prompts");
    int P = (int)json_array_size(prs), n_gen = (int)json_integer_value(json_object_get(ref, "n_gen"));
    if (P < 1 || P > MAX_PROMPTS || n_gen < 1) {
        fprintf(stderr, "FAIL %s: bad prompts/n_gen\n", fixture);
        return 1;
    }

    /* reference ids of every prompt, packed end to end */
    int32_t *rids[MAX_PROMPTS];
    int rn[MAX_PROMPTS], cu[MAX_PROMPTS + 1] = {0}, max_len = 0;
    for (int p = 0; p < P; p++) {
        rids[p] = json_ids(json_object_get(json_array_get(prs, p), "ids"), &rn[p]);
        cu[p + 1] = cu[p] + rn[p];
        if (rn[p] > max_len) max_len = rn[p];
    }
    int T = cu[P];

    backend *be = backend_cpu_create(2);
    model m;
    tokenizer *tok = NULL;
    double t0 = now_seconds();
    if (model_import(path, be, T, &m, &tok, err, sizeof err)) {
        fprintf(stderr, "FAIL import %s: %s\n", path, err);
        return 1;
    }
    if (!tok) {
        fprintf(stderr, "FAIL import %s: no tokenizer\n", path);
        return 1;
    }
    const int V = m.cfg.vocab;
    printf("imported %s in %.2f s (V %d, %d layers)\n", path, now_seconds() - t0, V,
           m.cfg.n_layer);
    CHECK(V == (int)json_integer_value(json_object_get(ref, "vocab")), "vocab %d vs fixture", V);

    /* 1. tokenization: ours vs transformers' tokenizer / apply_chat_template */
    for (int p = 0; p < P; p++) {
        json_t *pr = json_array_get(prs, p);
        const char *kind = json_string_value(json_object_get(pr, "kind"));
        const char *rtext = json_string_value(json_object_get(pr, "text"));
        tok_ids ids = {0};
        int rc;
        if (strcmp(kind, "chat") == 0) {
            json_t *msgs = json_object_get(pr, "messages"), *mj;
            chat_msg cm[16];
            size_t nm = 0, i;
            json_array_foreach(msgs, i, mj) {
                if (nm == 16) break;
                cm[nm].role = json_string_value(json_object_get(mj, "role"));
                cm[nm].content = json_string_value(json_object_get(mj, "content"));
                nm++;
            }
            char *text = NULL;
            size_t tlen = 0;
            rc = chat_format(tok, cm, nm, 1, &text, &tlen, err, sizeof err);
            CHECK(rc == 0, "prompt %d: chat_format: %s", p, err);
            if (rc == 0) {
                size_t j = 0, rl = strlen(rtext);
                while (j < tlen && j < rl && text[j] == rtext[j]) j++;
                CHECK(tlen == rl && j == rl, "prompt %d: chat text differs from apply_chat_template at byte %zu: "
                      "ours \"%.40s\" ref \"%.40s\"", p, j, text + j, rtext + j);
            }
            free(text);
            rc = chat_encode(tok, cm, nm, 1, &ids, err, sizeof err);
        } else {
            rc = tokenizer_encode(tok, rtext, strlen(rtext), TOK_ALLOW_SPECIAL | TOK_ADD_SPECIAL, &ids, err, sizeof err);
        }
        CHECK(rc == 0, "prompt %d: encode: %s", p, err);
        int same = (int)ids.n == rn[p];
        for (int j = 0; same && j < rn[p]; j++) same = ids.ids[j] == rids[p][j];
        printf("  prompt %d (%s, %d ids): token ids %s\n", p, kind, rn[p], same ? "identical" : "DIFFER");
        if (!same) print_ids_diff("ids", ids.ids, (int)ids.n, rids[p], rn[p]);
        CHECK(same, "prompt %d: token ids differ from transformers'", p);
        free(ids.ids);
    }

    /* 2. next-token logits: one packed forward of the reference ids */
    int32_t *tokens = malloc(T * sizeof(int32_t)), *targets = malloc(T * sizeof(int32_t));
    for (int p = 0; p < P; p++) memcpy(tokens + cu[p], rids[p], rn[p] * sizeof(int32_t));
    for (int t = 0; t < T; t++) targets[t] = -1;
    float *logp = malloc(T * sizeof(float)), *lg = malloc((size_t)V * sizeof(float));
    model_batch b = {.T = T, .n_seq = P, .tokens = tokens, .targets = targets, .cu_seqlens = cu, .pos = NULL};
    t0 = now_seconds();
    int frc = model_forward(&m, &b, logp, NULL, err, sizeof err);
    CHECK(frc == 0, "model_forward: %s", err);
    printf("  packed forward of %d prompts (%d tokens): %.2f s\n", P, T, now_seconds() - t0);
    int full_p = (int)json_integer_value(json_object_get(ref, "full_logits_prompt"));
    double worst = 0;
    for (int p = 0; frc == 0 && p < P; p++) {
        json_t *pr = json_array_get(prs, p), *st = json_object_get(pr, "stats");
        CHECK(model_logits(&m, cu[p + 1] - 1, 1, lg, err, sizeof err) == 0, "model_logits: %s", err);
        double scale = json_real_value(json_object_get(st, "max_abs"));
        double d_top = 0, d_probe = 0;
        json_t *e;
        size_t i;
        json_array_foreach(json_object_get(pr, "top"), i, e) {
            int id = (int)json_integer_value(json_array_get(e, 0));
            d_top = fmax(d_top, fabs(lg[id] - json_real_value(json_array_get(e, 1))));
        }
        json_array_foreach(json_object_get(pr, "probe"), i, e) {
            int id = (int)json_integer_value(json_array_get(e, 0));
            d_probe = fmax(d_probe, fabs(lg[id] - json_real_value(json_array_get(e, 1))));
        }
        /* full-vector statistics: each moves by at most max |ours - ref| */
        double mean = 0, mx = -INFINITY;
        for (int v = 0; v < V; v++) mean += lg[v], mx = fmax(mx, lg[v]);
        mean /= V;
        double var = 0, se = 0;
        for (int v = 0; v < V; v++) var += (lg[v] - mean) * (lg[v] - mean), se += exp(lg[v] - mx);
        double sd = sqrt(var / V), lse = mx + log(se);
        double d_mean = fabs(mean - json_real_value(json_object_get(st, "mean")));
        double d_std = fabs(sd - json_real_value(json_object_get(st, "std")));
        double d_lse = fabs(lse - json_real_value(json_object_get(st, "logsumexp")));
        int best = 0;
        for (int v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        int rbest = (int)json_integer_value(json_array_get(json_array_get(json_object_get(pr, "top"), 0), 0));
        double d_full = -1;
        if (p == full_p) {
            const char *s = json_string_value(json_object_get(ref, "full_logits_f32_b64"));
            float *full = malloc((size_t)V * sizeof(float));
            long nb = s ? b64_decode(s, (unsigned char *)full, (size_t)V * sizeof(float)) : -1;
            CHECK(nb == (long)V * 4, "full logits: %ld bytes decoded, want %d", nb, V * 4);
            if (nb == (long)V * 4) {
                d_full = 0;
                for (int v = 0; v < V; v++) d_full = fmax(d_full, fabs(lg[v] - full[v]));
            }
            free(full);
        }
        double r_top = d_top / scale, r_probe = d_probe / scale, r_stat = fmax(d_mean, fmax(d_std, d_lse)) / scale;
        double r_full = d_full >= 0 ? d_full / scale : 0;
        double r = fmax(fmax(r_top, r_probe), fmax(r_stat, r_full));
        worst = fmax(worst, r);
        printf("  prompt %d logits (max |ref| %.3f): rel err top-50 %.2e, probe %.2e, mean/std/lse %.2e/%.2e/%.2e",
               p, scale, r_top, r_probe, d_mean / scale, d_std / scale, d_lse / scale);
        if (d_full >= 0) printf(", full vector %.2e", r_full);
        printf("; argmax %d (ref %d)\n", best, rbest);
        CHECK(r <= TOL, "prompt %d: next-token logits differ from transformers by %.3g relative (> %g)", p, r, TOL);
        CHECK(best == rbest, "prompt %d: argmax %d, transformers %d", p, best, rbest);
    }
    printf("  next-token logits: worst relative error %.3g over %d prompts\n", worst, P);

    /* 3. greedy rollouts, all prompts in one batch: no stop ids (exactly n_gen tokens) */
    rollout_engine r = {0};
    int rc = rollout_create(&r, &m, tok, P, max_len + n_gen + 1, err, sizeof err);
    CHECK(rc == 0, "rollout_create: %s", err);
    if (rc == 0) {
        rollout_prompt rp[MAX_PROMPTS];
        for (int p = 0; p < P; p++) rp[p] = (rollout_prompt){.ids = rids[p], .n = rn[p], .id = (uint64_t)p};
        completion out[MAX_PROMPTS];
        memset(out, 0, sizeof out);
        rollout_config cfg = {.sampler = {.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0},
                              .max_new_tokens = n_gen, .seed = 1};
        t0 = now_seconds();
        rc = rollout_generate(&r, rp, P, 1, &cfg, out, err, sizeof err);
        CHECK(rc == 0, "rollout_generate: %s", err);
        if (rc == 0) printf("  greedy rollouts, %d x %d tokens: %.2f s\n", P, n_gen, now_seconds() - t0);
        for (int p = 0; rc == 0 && p < P; p++) {
            json_t *pr = json_array_get(prs, p);
            int ng;
            int32_t *g = json_ids(json_object_get(pr, "greedy"), &ng);
            int k = 0;
            while (k < ng && k < out[p].n_tokens && out[p].tokens[k] == g[k]) k++;
            int same = k == ng && out[p].n_tokens == ng;
            printf("  prompt %d greedy: %d/%d tokens identical", p, k, ng);
            if (!same && k < out[p].n_tokens && k < ng) {
                double margin = json_real_value(json_array_get(json_object_get(pr, "greedy_margin"), k));
                printf(" (step %d: ours %d, ref %d; ref top1-top2 margin %.3g)", k, out[p].tokens[k], g[k], margin);
            }
            printf("\n");
            CHECK(same, "prompt %d: greedy tokens differ from transformers' generate from step %d", p, k);
            /* decode of the completion == tokenizer.decode(gen) */
            const char *rtext = json_string_value(json_object_get(pr, "greedy_text"));
            char buf[4096];
            size_t nb = tokenizer_decode(tok, g, (size_t)ng, 0, buf, sizeof buf);
            CHECK(nb == strlen(rtext) && nb < sizeof buf && memcmp(buf, rtext, nb) == 0,
                  "prompt %d: decode of the greedy ids differs from tokenizer.decode", p);
            free(g);
            completion_free(&out[p]);
        }

        /* chat prompts with the chat stop ids: each completion ends at the reference's first stop token */
        int32_t stop[8];
        int n_stop = chat_stop_tokens(tok, stop, 8);
        json_t *rstop = json_object_get(ref, "stop_ids");
        int stop_same = n_stop == (int)json_array_size(rstop);
        for (int i = 0; stop_same && i < n_stop; i++) {
            int found = 0;
            for (size_t j = 0; j < json_array_size(rstop); j++) found |= stop[i] == json_integer_value(json_array_get(rstop, j));
            stop_same = found;
        }
        CHECK(stop_same, "chat_stop_tokens: %d ids, not the fixture's eos/<|im_end|>/<|endoftext|> set", n_stop);
        cfg.stop_ids = stop;
        cfg.n_stop_ids = n_stop;
        rollout_prompt cp[MAX_PROMPTS];
        int cidx[MAX_PROMPTS], nc = 0;
        for (int p = 0; p < P; p++)
            if (strcmp(json_string_value(json_object_get(json_array_get(prs, p), "kind")), "chat") == 0)
                cidx[nc] = p, cp[nc++] = rp[p];
        memset(out, 0, sizeof out);
        rc = rollout_generate(&r, cp, nc, 1, &cfg, out, err, sizeof err);
        CHECK(rc == 0, "rollout_generate (stop ids): %s", err);
        for (int c = 0; rc == 0 && c < nc; c++) {
            int p = cidx[c];
            json_t *pr = json_array_get(prs, p);
            int ng, fs = (int)json_integer_value(json_object_get(pr, "first_stop"));
            int32_t *g = json_ids(json_object_get(pr, "greedy"), &ng);
            int want_n = fs >= 0 ? fs + 1 : ng, want_finish = fs >= 0 ? ROLLOUT_STOP : ROLLOUT_LENGTH;
            int same = out[c].n_tokens == want_n && out[c].finish == want_finish;
            for (int k = 0; same && k < want_n; k++) same = out[c].tokens[k] == g[k];
            printf("  prompt %d with stop ids: %d tokens, %s (ref: %d, %s)\n", p, out[c].n_tokens,
                   out[c].finish == ROLLOUT_STOP ? "stop" : "length", want_n, fs >= 0 ? "stop" : "length");
            CHECK(same, "prompt %d: completion with stop ids is not the reference cut at its first stop token", p);
            free(g);
            completion_free(&out[c]);
        }
        rollout_free(&r);
    }

    free(tokens);
    free(targets);
    free(logp);
    free(lg);
    for (int p = 0; p < P; p++) free(rids[p]);
    tokenizer_free(tok);
    model_free(&m);
    be->destroy(be);
    json_decref(ref);
    if (fails) {
        fprintf(stderr, "%d checks failed\n", fails);
        return 1;
    }
    printf("test_smollm2_reference: all checks passed\n");
    return 0;
}
