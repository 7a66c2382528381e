/* tests/test_rollout.c: the rollout engine and the sampler on the CPU
 * backend: greedy identical across batch sizes (1, 7, 64 slots) and thread
 * counts; a (seed, prompt, index) completion independent of the batch around
 * it; stop strings across token boundaries, stop ids, max_new_tokens; empty
 * and over-long prompts rejected; sampler frequencies against the intended
 * distribution (chi-square) for temperature / top-k / top-p / min-p; the
 * sampler's kept set against transformers' warpers (fixture
 * tests/fixtures/sampler_cases.json from tools/ref_sampler.py: top-k, top-p,
 * then min-p);
 * rollout_grade (grading overlapped with generation) gives the completions
 * and grades of rollout_generate followed by grader_runner_grade. */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollout.h"
#include "rollout_grade.h"
#include "util.h"

static int failures = 0;
#define CHECK(cond, ...)                                 \
    do {                                                 \
        int ok_ = (cond);                                \
        printf("%s ", ok_ ? "ok  " : "FAIL");            \
        printf(__VA_ARGS__);                             \
        printf("\n");                                    \
        if (!ok_) failures++;                            \
    } while (0)

/* a tokenizer of the 94 printable ASCII characters (ids 0..93, their
   vocabulary form is the character itself), "Ġ" = space (94) and "<eos>" (95) */
static tokenizer *make_tokenizer(void) {
    static char store[96][8];
    const char *toks[96];
    int32_t types[96];
    for (int i = 0; i < 94; i++) store[i][0] = (char)(33 + i), store[i][1] = 0;
    strcpy(store[94], "\xc4\xa0");
    strcpy(store[95], "<eos>");
    for (int i = 0; i < 96; i++) toks[i] = store[i], types[i] = i == 95 ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    tokenizer_spec sp;
    tokenizer_spec_init(&sp);
    sp.n_vocab = 96;
    sp.tokens = toks;
    sp.token_types = types;
    sp.eos_id = 95;
    char err[256];
    tokenizer *t = tokenizer_create(&sp, err, sizeof err);
    if (!t) printf("FAIL tokenizer_create: %s\n", err), exit(1);
    return t;
}

static void make_model(model *mp, backend *be) {
    model m;
    model_config c = {.vocab = 96, .d_model = 64, .n_layer = 2, .n_head = 4, .n_kv_head = 2, .head_dim = 16,
                      .d_ff = 128, .rope_theta = 10000.0f, .rms_eps = 1e-5f, .tie_embeddings = 1, .max_seq = 96};
    char err[256];
    if (model_create(&m, &c, be, 256, err, sizeof err)) printf("FAIL model_create: %s\n", err), exit(1);
    model_init_weights(&m, 7);
    for (int i = 0; i < m.n_tensors; i++) /* peaked distributions: no near-ties */
        if (!strstr(m.tensors[i].name, "norm")) be->scale(be, m.params + m.tensors[i].offset, 20.0f, m.tensors[i].numel);
    *mp = m;
}

enum { NP = 64, PLEN_MAX = 12 };
static int32_t prompt_ids[NP][PLEN_MAX];
static rollout_prompt prompts[NP];

static void make_prompts(void) {
    for (int i = 0; i < NP; i++) {
        int n = 1 + (int)(rng_u64(11, i) % PLEN_MAX);
        for (int t = 0; t < n; t++) prompt_ids[i][t] = (int32_t)(rng_u64(12 + i, t) % 94);
        prompts[i] = (rollout_prompt){.ids = prompt_ids[i], .n = n, .id = 1000 + i};
    }
}

static int same_completion(const completion *a, const completion *b) {
    return a->n_tokens == b->n_tokens && a->finish == b->finish &&
           !memcmp(a->tokens, b->tokens, a->n_tokens * sizeof(int32_t)) && a->text_len == b->text_len &&
           !memcmp(a->text, b->text, a->text_len);
}

static completion *generate(model *m, tokenizer *tok, int slots, const rollout_prompt *p, int n, int G,
                            const rollout_config *cfg) {
    rollout_engine r;
    char err[256];
    if (rollout_create(&r, m, tok, slots, 96, err, sizeof err)) printf("FAIL rollout_create: %s\n", err), exit(1);
    completion *out = calloc((size_t)n * G, sizeof *out);
    if (rollout_generate(&r, p, n, G, cfg, out, err, sizeof err)) printf("FAIL generate: %s\n", err), exit(1);
    rollout_free(&r);
    return out;
}

static void free_all(completion *c, int n) {
    for (int i = 0; i < n; i++) completion_free(&c[i]);
    free(c);
}

/* ---- rollout_grade ---- */

/* tests/faults/good.so (score = output_len + 1000 * item k + 0.5 if finished
   + bias), process-isolated or inline */
static void good_spec(grader_spec *s, const char *name, double bias, int isolation) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    const char *build = getenv("RFT_BUILD");
    snprintf(s->path, sizeof s->path, "%s/tests/faults/good.so", build ? build : "build");
    char cfg[64];
    snprintf(cfg, sizeof cfg, "{\"bias\": %g}", bias);
    s->config_json = strdup(cfg);
    s->timeout_ms = 5000;
    s->memory_mb = 256;
    s->isolation = isolation;
}

static void test_rollout_grade(model *m, tokenizer *tok) {
    enum { G = 3, N = NP * G };
    char err[512];
    grader_spec specs[2];
    good_spec(&specs[0], "process", 0.25, GRADER_ISOLATION_PROCESS);
    good_spec(&specs[1], "inline", 0.5, GRADER_ISOLATION_INLINE);
    grader_runner *gr = grader_runner_create(specs, 2, 2, err, sizeof err);
    free(specs[0].config_json), free(specs[1].config_json);
    if (!gr) {
        CHECK(0, "rollout_grade: grader_runner_create: %s", err);
        return;
    }
    json_t *items[NP], *citems[N];
    for (int i = 0; i < NP; i++) items[i] = json_pack("{s:i}", "k", i % 7);
    int32_t eos = 95;
    rollout_config t = {.sampler = {.temperature = 1.0f}, .max_new_tokens = 24, .stop_ids = &eos, .n_stop_ids = 1,
                        .seed = 3};
    /* the reference: generate everything, then grade everything */
    completion *ref = generate(m, tok, 16, prompts, NP, G, &t);
    rft_sample smp[N];
    for (int i = 0; i < N; i++) {
        smp[i] = (rft_sample){.output_text = ref[i].text, .output_len = ref[i].text_len, .tokens = ref[i].tokens,
                              .n_tokens = (size_t)ref[i].n_tokens, .finished = ref[i].finish == ROLLOUT_STOP};
        citems[i] = items[i / G];
    }
    grade_result *want = calloc((size_t)N * 2, sizeof *want), *got = calloc((size_t)N * 2, sizeof *got);
    int rc_ref = grader_runner_grade(gr, smp, citems, N, want, err, sizeof err);
    CHECK(rc_ref == 0, "rollout_grade: reference grading %s", rc_ref ? err : "");
    /* overlapped */
    rollout_engine r;
    completion *out = calloc(N, sizeof *out);
    rollout_grade_times tm;
    int rc = rollout_create(&r, m, tok, 16, 96, err, sizeof err) ||
             rollout_grade(&r, gr, 2, prompts, NP, G, &t, items, out, got, &tm, err, sizeof err);
    CHECK(rc == 0, "rollout_grade runs %s", rc ? err : "");
    int same_c = 1, same_g = 1, formula = 1, stops = 0;
    for (int i = 0; i < N && rc == 0; i++) {
        same_c &= same_completion(&ref[i], &out[i]);
        stops += out[i].finish == ROLLOUT_STOP;
        for (int g = 0; g < 2; g++) {
            const grade_result *a = &want[i * 2 + g], *b = &got[i * 2 + g];
            same_g &= a->status == b->status && a->score == b->score && a->status == GRADE_OK;
            double f = (double)out[i].text_len + 1000.0 * ((i / G) % 7) + (out[i].finish == ROLLOUT_STOP ? 0.5 : 0) +
                       (g ? 0.5 : 0.25);
            formula &= b->score == f;
        }
    }
    CHECK(same_c && same_g && formula,
          "rollout_grade: %d completions (%d stopped early) and their grades (process + inline) equal generate-then-grade; "
          "%d graded before the last finished; sampling %.3f s, grading %.3f s after it (%.3f s busy)",
          N, stops, tm.graded_early, tm.sampling, tm.grading, tm.grading_busy);
    for (int i = 0; i < N && rc == 0; i++) completion_free(&out[i]);
    /* a rollout that fails (an empty prompt) fails the call, naming it */
    rollout_prompt bad[2] = {prompts[0], {.ids = prompt_ids[1], .n = 0, .id = 7}};
    rc = rollout_grade(&r, gr, 2, bad, 2, G, &t, items, out, got, &tm, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "prompt 1 is empty"), "rollout_grade: a failing rollout fails the call: %s", err);
    rollout_free(&r);
    free_all(ref, N);
    free(out), free(want), free(got);
    for (int i = 0; i < NP; i++) json_decref(items[i]);
    grader_runner_free(gr);
}

/* ---- sampler distribution: chi-square against an independent reference ---- */
static void reference_dist(const float *logits, int V, float T, int top_k, float top_p, float min_p, double *p) {
    double mx = -1e300, s = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, logits[i] / T);
    for (int i = 0; i < V; i++) s += p[i] = exp(logits[i] / T - mx);
    for (int i = 0; i < V; i++) p[i] /= s;
    int order[256];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++) /* selection sort, descending, stable by id */
        for (int j = i + 1; j < V; j++)
            if (p[order[j]] > p[order[i]] || (p[order[j]] == p[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j], order[j] = t;
            }
    int keep = V;
    if (top_k > 0 && top_k < keep) keep = top_k;
    if (top_p < 1) {
        double cum = 0, tot = 0;
        for (int k = 0; k < keep; k++) tot += p[order[k]];
        for (int k = 0; k < keep; k++) {
            cum += p[order[k]];
            if (cum >= top_p * tot) {
                keep = k + 1;
                break;
            }
        }
    }
    double pmax = p[order[0]];
    double q[256] = {0}, tot = 0;
    for (int k = 0; k < keep; k++)
        if (p[order[k]] >= min_p * pmax) q[order[k]] = p[order[k]], tot += p[order[k]];
    for (int i = 0; i < V; i++) p[i] = q[i] / tot;
}

static void check_distribution(const char *name, float T, int top_k, float top_p, float min_p) {
    enum { V = 40, N = 200000 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)(3.0 * rng_normal(99, i));
    double ref[V], mine[V];
    reference_dist(logits, V, T, top_k, top_p, min_p, ref);
    sampler_config c = {.temperature = T, .top_k = top_k, .top_p = top_p, .min_p = min_p};
    sampler_scratch s;
    sampler_scratch_init(&s, V);
    sampler_distribution(&c, logits, V, &s, mine);
    double maxd = 0;
    for (int i = 0; i < V; i++) maxd = fmax(maxd, fabs(mine[i] - ref[i]));
    long cnt[V] = {0};
    for (int n = 0; n < N; n++) cnt[sampler_sample(&c, logits, V, rng_uniform(4242, n), &s, NULL)]++;
    double chi = 0;
    int df = -1, outside = 0;
    for (int i = 0; i < V; i++) {
        if (ref[i] == 0) {
            outside += cnt[i] != 0;
            continue;
        }
        double e = ref[i] * N;
        chi += (cnt[i] - e) * (cnt[i] - e) / e;
        df++;
    }
    /* bound: mean df + 5 standard deviations (sqrt(2 df)) */
    double bound = df + 5 * sqrt(2.0 * (df > 0 ? df : 1));
    CHECK(maxd < 1e-6 && outside == 0 && chi < bound,
          "sampler %-28s support %2d, |p - ref| %.1e, chi2 %.1f < %.1f, draws outside support %d", name, df + 1,
          maxd, chi, bound, outside);
    sampler_scratch_free(&s);
}

/* ---- sampler kept set against transformers' warpers (tools/ref_sampler.py) ---- */
static void check_hf_kept_sets(void) {
    json_error_t jerr;
    json_t *root = json_load_file("tests/fixtures/sampler_cases.json", 0, &jerr);
    json_t *cases = json_object_get(root, "cases");
    size_t nc = json_array_size(cases);
    int bad = 0, max_v = 0;
    for (size_t ci = 0; ci < nc; ci++) {
        json_t *cs = json_array_get(cases, ci), *jl = json_object_get(cs, "logits"), *jk = json_object_get(cs, "kept");
        int V = (int)json_array_size(jl);
        float *z = malloc((size_t)V * sizeof *z);
        double *p = malloc((size_t)V * sizeof *p);
        char *want = calloc((size_t)V, 1);
        for (int i = 0; i < V; i++) z[i] = (float)json_number_value(json_array_get(jl, i));
        for (size_t k = 0; k < json_array_size(jk); k++) want[json_integer_value(json_array_get(jk, k))] = 1;
        sampler_config c = {.temperature = (float)json_number_value(json_object_get(cs, "temperature")),
                            .top_k = (int)json_integer_value(json_object_get(cs, "top_k")),
                            .top_p = (float)json_number_value(json_object_get(cs, "top_p")),
                            .min_p = (float)json_number_value(json_object_get(cs, "min_p"))};
        sampler_scratch s;
        sampler_scratch_init(&s, V);
        sampler_distribution(&c, z, V, &s, p);
        int n_got = 0, n_want = (int)json_array_size(jk), first = -1;
        for (int i = 0; i < V; i++) {
            n_got += p[i] > 0;
            if ((p[i] > 0) != want[i] && first < 0) first = i;
        }
        if (first >= 0) {
            bad++;
            printf("FAIL sampler vs transformers: case %zu (%s V %d, T %g, top_k %d, top_p %g, min_p %g): keeps %d "
                   "ids, transformers %d; id %d differs\n",
                   ci, json_string_value(json_object_get(cs, "name")), V, (double)c.temperature, c.top_k,
                   (double)c.top_p, (double)c.min_p, n_got, n_want, first);
        }
        max_v = V > max_v ? V : max_v;
        sampler_scratch_free(&s);
        free(z), free(p), free(want);
    }
    CHECK(root && nc >= 50 && bad == 0, "sampler kept set = transformers' (temperature, top-k, top-p, min-p warpers): %zu "
          "cases (V 3..%d, ties, [.5 .3 .2] top_p 0.6 min_p 0.5 keeps {0, 1}), %d differ", nc, max_v, bad);
    json_decref(root);
}

int main(void) {
    backend *be = backend_cpu_create(2);
    tokenizer *tok = make_tokenizer();
    model m2, m1_; /* the same weights on a 2-thread and a 1-thread backend */
    make_model(&m2, be);
    backend *be1 = backend_cpu_create(1);
    make_model(&m1_, be1);
    model *m = &m2, *m1 = &m1_;
    /* the kernels run on their backend's threads; the rollout's host sampler
       on omp_get_max_threads() of the thread that creates the engine */
    omp_set_num_threads(2);
    make_prompts();
    int32_t eos = 95;
    rollout_config g = {.sampler = {.temperature = 0}, .max_new_tokens = 24, .stop_ids = &eos, .n_stop_ids = 1, .seed = 1};

    /* greedy: 64, 7 and 1 slots, 2 threads; then 1 thread */
    completion *a = generate(m, tok, 64, prompts, NP, 1, &g);
    completion *b = generate(m, tok, 7, prompts, NP, 1, &g);
    completion *c = generate(m, tok, 1, prompts, NP, 1, &g);
    omp_set_num_threads(1);
    completion *d = generate(m1, tok, 64, prompts, NP, 1, &g);
    omp_set_num_threads(2);
    int same_b = 1, same_c = 1, same_d = 1, total = 0;
    for (int i = 0; i < NP; i++) {
        same_b &= same_completion(&a[i], &b[i]);
        same_c &= same_completion(&a[i], &c[i]);
        same_d &= same_completion(&a[i], &d[i]);
        total += a[i].n_tokens;
    }
    CHECK(same_b && same_c, "greedy identical for 64, 7 and 1 slots (%d tokens)", total);
    CHECK(same_d, "greedy identical for 2 and 1 threads");
    int n_len = 0;
    for (int i = 0; i < NP; i++) n_len += a[i].finish == ROLLOUT_LENGTH && a[i].n_tokens == 24;
    CHECK(n_len > 0, "max_new_tokens respected (%d completions cut at 24)", n_len);
    free_all(b, NP), free_all(c, NP), free_all(d, NP);

    /* bf16 weights (sampling.dtype: bf16): the same batch and thread
       independence; close to fp32 (same first token for most prompts); fp32
       afterwards is exactly as before (the fp32 weights are untouched) */
    {
        rollout_config h = g;
        h.bf16 = 1;
        completion *ha = generate(m, tok, 64, prompts, NP, 1, &h);
        completion *hb = generate(m, tok, 7, prompts, NP, 1, &h);
        omp_set_num_threads(1);
        completion *hc = generate(m1, tok, 1, prompts, NP, 1, &h);
        omp_set_num_threads(2);
        completion *fa = generate(m, tok, 64, prompts, NP, 1, &g);
        int hs = 1, first_same = 0, fs = 1, ntok = 0;
        double dlp = 0;
        for (int i = 0; i < NP; i++) {
            hs &= same_completion(&ha[i], &hb[i]) && same_completion(&ha[i], &hc[i]);
            fs &= same_completion(&fa[i], &a[i]);
            if (ha[i].tokens[0] == a[i].tokens[0]) {
                first_same++;
                dlp += fabs(ha[i].logprobs[0] - a[i].logprobs[0]);
                ntok++;
            }
        }
        CHECK(hs, "bf16: greedy identical for 64, 7 and 1 slots and 2 vs 1 threads");
        CHECK(first_same >= NP * 9 / 10, "bf16: first greedy token equals fp32's for %d of %d prompts", first_same, NP);
        CHECK(ntok > 0 && dlp / ntok < 0.05, "bf16: mean |log-prob - fp32 log-prob| of equal first tokens %.2e",
              ntok ? dlp / ntok : -1.0);
        CHECK(fs, "fp32 after a bf16 rollout: identical to before");
        free_all(ha, NP), free_all(hb, NP), free_all(hc, NP), free_all(fa, NP);
    }

    /* sampled: prompt 5's group (G = 4) alone vs inside the full batch */
    rollout_config s = g;
    s.sampler = (sampler_config){.temperature = 1.0f, .top_p = 0.95f};
    completion *full = generate(m, tok, 64, prompts, NP, 4, &s);
    completion *alone = generate(m, tok, 4, &prompts[5], 1, 4, &s);
    int same = 1, differ = 0;
    for (int k = 0; k < 4; k++) same &= same_completion(&full[5 * 4 + k], &alone[k]);
    for (int k = 1; k < 4; k++) differ += !same_completion(&alone[0], &alone[k]);
    CHECK(same, "(seed, prompt, index) completion independent of the batch");
    CHECK(differ > 0, "group samples differ from each other (%d of 3)", differ);
    double lp_ok = 1;
    for (int k = 0; k < 4; k++)
        for (int t = 0; t < alone[k].n_tokens; t++) lp_ok = lp_ok && alone[k].logprobs[t] <= 0 && isfinite(alone[k].logprobs[t]);
    CHECK(lp_ok, "sampling log-probs finite and <= 0");
    s.seed = 2;
    completion *other = generate(m, tok, 4, &prompts[5], 1, 4, &s);
    int changed = 0;
    for (int k = 0; k < 4; k++) changed += !same_completion(&other[k], &alone[k]);
    CHECK(changed > 0, "another seed gives other completions (%d of 4)", changed);
    free_all(full, NP * 4), free_all(other, 4);

    /* stop string across a token boundary: take 2 characters of a completion
       that come from two tokens, stop there */
    completion *ref = &alone[0];
    char stop[3] = {0};
    size_t at = 0;
    for (size_t p = 1; p + 1 < ref->text_len; p++)
        if (ref->text[p] != ' ' && ref->text[p + 1] != ' ') {
            stop[0] = ref->text[p], stop[1] = ref->text[p + 1], at = p;
            break;
        }
    /* the cut is at the first occurrence */
    char *first = strstr(ref->text, stop);
    const char *stops[1] = {stop};
    rollout_config ss = s;
    ss.seed = 1;
    ss.stop_strings = stops;
    ss.n_stop_strings = 1;
    completion *cut = generate(m, tok, 4, &prompts[5], 1, 4, &ss);
    size_t want = first ? (size_t)(first - ref->text) : 0;
    CHECK(stop[0] && cut[0].finish == ROLLOUT_STOP && cut[0].text_len == want &&
              !memcmp(cut[0].text, ref->text, want) && cut[0].n_tokens <= ref->n_tokens &&
              !memcmp(cut[0].tokens, ref->tokens, cut[0].n_tokens * sizeof(int32_t)),
          "stop string \"%s\" spanning two tokens cuts the text at %zu (first seen at %zu), tokens a prefix", stop,
          want, at);
    free_all(cut, 4), free_all(alone, 4);

    /* stop id: some greedy completions end with eos */
    int n_eos = 0, eos_ok = 1;
    for (int i = 0; i < NP; i++)
        if (a[i].finish == ROLLOUT_STOP) {
            n_eos++;
            eos_ok &= a[i].tokens[a[i].n_tokens - 1] == eos && !strstr(a[i].text, "<eos>");
        }
    CHECK(eos_ok, "stop id ends a completion, kept as its last token, not in the text (%d of %d)", n_eos, NP);
    free_all(a, NP);

    /* bad prompts */
    rollout_engine r;
    char err[256];
    rollout_create(&r, m, tok, 4, 96, err, sizeof err);
    completion out[4];
    rollout_prompt empty = {.ids = prompt_ids[0], .n = 0, .id = 1};
    int rc = rollout_generate(&r, &empty, 1, 1, &g, out, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "empty"), "empty prompt rejected: %s", err);
    int32_t longp[96] = {0};
    rollout_prompt lp = {.ids = longp, .n = 96, .id = 1};
    rc = rollout_generate(&r, &lp, 1, 1, &g, out, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "96 tokens"), "prompt longer than the context rejected: %s", err);
    rollout_free(&r);

    /* greedy log-prob (vectorised exp where available) against a scalar
       double log-softmax, vocabulary sizes with and without a tail */
    {
        int Vs[] = {49152, 49157, 97, 3};
        double worst = 0;
        int arg_ok = 1;
        for (int vi = 0; vi < 4; vi++) {
            int V = Vs[vi];
            float *lg = malloc((size_t)V * sizeof(float));
            for (int i = 0; i < V; i++) lg[i] = (float)(4.0 * rng_normal(77 + vi, i));
            if (V > 100) { /* a tie for the maximum: the lower id wins; -0 == +0 */
                float mx = lg[0];
                for (int i = 1; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
                lg[V / 3] = mx + 1.0f, lg[V - 2] = mx + 1.0f, lg[V / 2] = -0.0f, lg[V / 2 + 1] = 0.0f;
            }
            sampler_scratch sc;
            sampler_scratch_init(&sc, V);
            float lp;
            sampler_config gc = {.temperature = 0};
            int32_t id = sampler_sample(&gc, lg, V, 0.5, &sc, &lp);
            int best = 0;
            for (int i = 1; i < V; i++)
                if (lg[i] > lg[best]) best = i;
            double sum = 0;
            for (int i = 0; i < V; i++) sum += exp((double)lg[i] - lg[best]);
            double d = fabs((double)lp + log(sum)) / fabs(log(sum));
            if (d > worst) worst = d;
            arg_ok &= id == best;
            sampler_scratch_free(&sc);
            free(lg);
        }
        /* a row with a NaN: the scalar rule (NaN never compares greater) */
        float nanrow[40];
        for (int i = 0; i < 40; i++) nanrow[i] = (float)i * 0.1f;
        nanrow[7] = NAN, nanrow[33] = 100.0f;
        sampler_scratch sc2;
        sampler_scratch_init(&sc2, 40);
        sampler_config g0 = {.temperature = 0};
        arg_ok &= sampler_sample(&g0, nanrow, 40, 0.5, &sc2, NULL) == 33;
        sampler_scratch_free(&sc2);
        CHECK(arg_ok && worst < 1e-6,
              "greedy: argmax id (ties to the lower id, a NaN row) and log-prob (rel err %.1e) for V 49152, 49157, 97, 3",
              worst);
    }
    check_distribution("temperature 1", 1.0f, 0, 1.0f, 0.0f);
    check_distribution("temperature 0.7", 0.7f, 0, 1.0f, 0.0f);
    check_distribution("top_k 5", 1.0f, 5, 1.0f, 0.0f);
    check_distribution("top_p 0.8", 1.0f, 0, 0.8f, 0.0f);
    check_distribution("temp 1.5 top_p 0.9 top_k 12", 1.5f, 12, 0.9f, 0.0f);
    check_distribution("min_p 0.05", 1.0f, 0, 1.0f, 0.05f);
    check_distribution("top_p 0.8 min_p 0.1", 1.0f, 0, 0.8f, 0.1f);
    check_distribution("temp 0.7 top_k 12 top_p 0.9 min_p .02", 0.7f, 12, 0.9f, 0.02f);
    check_hf_kept_sets();

    test_rollout_grade(m, tok);

    tokenizer_free(tok);
    model_free(m);
    model_free(m1);
    be->destroy(be);
    be1->destroy(be1);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
