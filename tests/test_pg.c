/* tests/test_pg.c: trainer/pg.c against the NumPy reference tools/ref_pg.py
 * (fixture tests/fixtures/pg_cases.json): advantages (every algorithm x
 * scale_rewards x dynamic sampling, masked rewards, tied and single-reward
 * groups), the DAPO overlong penalty around its buffer, the clipped surrogate
 * loss, its per-token weights w = -dL/dlogp and went = -dL/dH and its stats
 * (every algorithm x aggregation x kl_beta x entropy_coef, plus ratios exactly
 * on the clip bounds, just outside and just inside), and the SFT loss.
 * Doubles must agree within 1e-6 relative, float32 weights within 1e-5.
 * One line per case; exit 1 on any mismatch. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../trainer/pg.h"

#define FIXTURE "tests/fixtures/pg_cases.json"

static int n_fail, n_case;

static void *alloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_pg: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* |got - want| <= rtol |want| + atol */
static int close_to(double got, double want, double rtol, double atol) {
    if (isnan(got) || isnan(want)) return 0;
    return fabs(got - want) <= rtol * fabs(want) + atol;
}

static double num(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!v || !json_is_number(v)) {
        fprintf(stderr, "%s: field '%s' missing or not a number\n", FIXTURE, k);
        exit(1);
    }
    return json_number_value(v);
}

static const char *str(json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    if (!s) {
        fprintf(stderr, "%s: field '%s' missing or not a string\n", FIXTURE, k);
        exit(1);
    }
    return s;
}

static json_t *arr(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!json_is_array(v)) {
        fprintf(stderr, "%s: field '%s' missing or not an array\n", FIXTURE, k);
        exit(1);
    }
    return v;
}

static int lookup(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    fprintf(stderr, "%s: unknown name '%s'\n", FIXTURE, s);
    exit(1);
}

static const char *const ALGO_NAMES[] = {"grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp"};
static const algo_name ALGO_VALS[] = {ALGO_GRPO, ALGO_DR_GRPO, ALGO_DAPO, ALGO_GSPO, ALGO_RLOO, ALGO_REINFORCE_PP};
static const char *const SCALE_NAMES[] = {"group", "batch", "none"};
static const scale_mode SCALE_VALS[] = {SCALE_GROUP, SCALE_BATCH, SCALE_NONE};
static const char *const AGG_NAMES[] = {"token_mean", "seq_mean", "seq_sum_norm"};
static const loss_agg AGG_VALS[] = {AGG_TOKEN_MEAN, AGG_SEQ_MEAN, AGG_SEQ_SUM_NORM};

static void report(const char *kind, const char *name, int ok, const char *why) {
    n_case++;
    if (!ok) n_fail++;
    printf("%-4s %-9s %-48s%s%s\n", ok ? "ok" : "FAIL", kind, name, ok ? "" : "  ", ok ? "" : why);
}

/* ---- advantages ---- */

static void test_adv(json_t *c) {
    char why[256] = "";
    const char *name = str(c, "name");
    pg_params p = {0};
    p.algo = ALGO_VALS[lookup(str(c, "algo"), ALGO_NAMES, 6)];
    p.scale = SCALE_VALS[lookup(str(c, "scale"), SCALE_NAMES, 3)];
    int ds = (int)num(c, "dynamic_sampling"), ng = (int)num(c, "n_groups"), G = (int)num(c, "G"), N = ng * G;
    json_t *r = arr(c, "reward"), *v = arr(c, "valid"), *e = json_object_get(c, "expect");
    json_t *ea = arr(e, "adv"), *ek = arr(e, "keep");
    if ((int)json_array_size(r) != N || (int)json_array_size(ea) != N) {
        fprintf(stderr, "%s: case %s: array sizes do not match n_groups * G\n", FIXTURE, name);
        exit(1);
    }
    double *rw = alloc(N * sizeof *rw), *adv = alloc(N * sizeof *adv);
    unsigned char *valid = alloc(N), *keep = alloc(N);
    for (int k = 0; k < N; k++) {
        rw[k] = json_number_value(json_array_get(r, k));
        valid[k] = (unsigned char)json_integer_value(json_array_get(v, k));
        keep[k] = 7;
    }
    int zs = pg_advantages(&p, ds, rw, valid, ng, G, adv, keep);
    int ok = 1;
    if (zs != (int)num(e, "zero_std")) ok = 0, snprintf(why, sizeof why, "zero_std %d, want %d", zs, (int)num(e, "zero_std"));
    for (int k = 0; k < N && ok; k++) {
        double want = json_number_value(json_array_get(ea, k));
        /* atol: groups of equal rewards give r - mean = O(1e-17) in either order of summation */
        if (!close_to(adv[k], want, 1e-6, 1e-9))
            ok = 0, snprintf(why, sizeof why, "adv[%d] = %.17g, want %.17g", k, adv[k], want);
        else if (keep[k] != json_integer_value(json_array_get(ek, k)))
            ok = 0, snprintf(why, sizeof why, "keep[%d] = %d, want %d", k, keep[k], (int)json_integer_value(json_array_get(ek, k)));
    }
    report("adv", name, ok, why);
    free(rw), free(adv), free(valid), free(keep);
}

/* ---- overlong penalty ---- */

static void test_overlong(json_t *c) {
    int len = (int)num(c, "len"), mx = (int)num(c, "max_new_tokens"), buf = (int)num(c, "buffer");
    double pen = num(c, "penalty"), want = num(c, "expect");
    double got = pg_overlong_penalty(len, mx, buf, pen);
    char name[96], why[128] = "";
    snprintf(name, sizeof name, "len %d max %d buffer %d penalty %g", len, mx, buf, pen);
    int ok = close_to(got, want, 1e-12, 1e-15);
    if (!ok) snprintf(why, sizeof why, "%.17g, want %.17g", got, want);
    report("overlong", name, ok, why);
}

/* ---- loss ---- */

typedef struct seqbuf {
    pg_seq *s;
    float **w, **went, *store;
    int n;
} seqbuf;

static float *floats(json_t *a, int n, float *dst) {
    if (json_is_null(a) || !a) return NULL;
    if ((int)json_array_size(a) != n) {
        fprintf(stderr, "%s: a token array has %zu values, want n = %d\n", FIXTURE, json_array_size(a), n);
        exit(1);
    }
    for (int t = 0; t < n; t++) dst[t] = (float)json_number_value(json_array_get(a, t));
    return dst;
}

/* the sequences of a case; every token array gets its own slice of one buffer */
static void seqs_load(json_t *js, seqbuf *b) {
    b->n = (int)json_array_size(js);
    long total = 0;
    for (int k = 0; k < b->n; k++) total += (long)num(json_array_get(js, k), "n");
    b->s = alloc((b->n + 1) * sizeof *b->s);
    b->w = alloc((b->n + 1) * sizeof *b->w);
    b->went = alloc((b->n + 1) * sizeof *b->went);
    b->store = alloc((5 * total + 1) * sizeof *b->store);
    float *q = b->store;
    for (int k = 0; k < b->n; k++) {
        json_t *o = json_array_get(js, k);
        int n = (int)num(o, "n");
        pg_seq *s = &b->s[k];
        memset(s, 0, sizeof *s);
        s->n = n;
        s->logp = floats(arr(o, "logp"), n, q), q += n;
        s->old = floats(json_object_get(o, "old"), n, q), q += n;
        s->ref = floats(json_object_get(o, "ref"), n, q), q += n;
        json_t *adv = json_object_get(o, "adv");
        s->adv = adv ? json_number_value(adv) : 0;
        json_t *kp = json_object_get(o, "keep");
        s->keep = kp ? (int)json_integer_value(kp) : 1;
        b->w[k] = q, q += n;
        b->went[k] = q, q += n;
        for (int t = 0; t < n; t++) b->w[k][t] = b->went[k][t] = NAN;
    }
}

static void seqs_free(seqbuf *b) { free(b->s), free(b->w), free(b->went), free(b->store); }

/* w / went of every token against the expected [seq][tok] arrays (float32:
 * 1e-5 relative, plus 1e-12 of the largest weight for cancellations) */
static int cmp_weights(float *const *got, const seqbuf *b, json_t *want, const char *what, char *why, size_t cap) {
    double big = 0;
    for (int k = 0; k < b->n; k++)
        for (int t = 0; t < b->s[k].n; t++) big = fmax(big, fabs(json_number_value(json_array_get(json_array_get(want, k), t))));
    for (int k = 0; k < b->n; k++) {
        json_t *wk = json_array_get(want, k);
        if ((int)json_array_size(wk) != b->s[k].n) {
            snprintf(why, cap, "%s[%d] has %zu values, want %d", what, k, json_array_size(wk), b->s[k].n);
            return 0;
        }
        for (int t = 0; t < b->s[k].n; t++) {
            double e = json_number_value(json_array_get(wk, t));
            if (!close_to(got[k][t], e, 1e-5, 1e-12 * big + 1e-30)) {
                snprintf(why, cap, "%s[%d][%d] = %.9g, want %.9g", what, k, t, got[k][t], e);
                return 0;
            }
        }
    }
    return 1;
}

static void test_loss(json_t *c) {
    char why[256] = "";
    const char *name = str(c, "name");
    json_t *P = json_object_get(c, "params"), *e = json_object_get(c, "expect");
    pg_params p = {0};
    p.algo = ALGO_VALS[lookup(str(P, "algo"), ALGO_NAMES, 6)];
    p.agg = AGG_VALS[lookup(str(P, "agg"), AGG_NAMES, 3)];
    p.eps_low = (float)num(P, "eps_low");
    p.eps_high = (float)num(P, "eps_high");
    p.kl_beta = (float)num(P, "kl_beta");
    p.entropy_coef = (float)num(P, "entropy_coef");
    p.max_new_tokens = (int)num(P, "max_new_tokens");
    seqbuf b;
    seqs_load(arr(c, "seqs"), &b);
    /* the clip bounds this case puts ratios exactly on: make sure they are
     * exact with this C library's exp, else the case would test nothing */
    int ok = 1;
    json_t *bd = json_object_get(c, "boundary");
    for (size_t i = 0; bd && i < json_array_size(bd) && ok; i++) {
        json_t *o = json_array_get(bd, i);
        int k = (int)num(o, "seq"), t = (int)num(o, "tok");
        const pg_seq *s = &b.s[k];
        double lr = 0;
        if (p.algo == ALGO_GSPO) {
            for (int u = 0; u < s->n; u++) lr += (double)s->logp[u] - s->old[u];
            lr /= s->n;
        } else {
            lr = (double)s->logp[t] - s->old[t];
        }
        double bound = !strcmp(str(o, "side"), "low") ? 1.0 - p.eps_low : 1.0 + p.eps_high;
        if (exp(lr) != bound)
            ok = 0, snprintf(why, sizeof why, "seq %d tok %d: exp(log-ratio) = %.17g is not the clip bound %.17g", k, t, exp(lr), bound);
    }
    pg_stats st;
    memset(&st, 0xff, sizeof st);
    pg_loss(&p, b.s, b.n, b.w, b.went, &st);
    const struct {
        const char *k;
        double got;
    } vals[] = {{"loss", st.loss}, {"kl", st.kl}, {"clip_low", st.clip_low}, {"clip_high", st.clip_high}, {"ratio_mean", st.ratio_mean}};
    for (size_t i = 0; i < sizeof vals / sizeof *vals && ok; i++) {
        double want = num(e, vals[i].k);
        if (!close_to(vals[i].got, want, 1e-6, 1e-14))
            ok = 0, snprintf(why, sizeof why, "%s = %.17g, want %.17g", vals[i].k, vals[i].got, want);
    }
    if (ok && st.tokens != (long)num(e, "tokens")) ok = 0, snprintf(why, sizeof why, "tokens = %ld, want %ld", st.tokens, (long)num(e, "tokens"));
    if (ok) ok = cmp_weights(b.w, &b, arr(e, "w"), "w", why, sizeof why);
    if (ok) ok = cmp_weights(b.went, &b, arr(e, "went"), "went", why, sizeof why);
    /* went may be NULL: w must not change */
    if (ok) {
        seqbuf b2;
        seqs_load(arr(c, "seqs"), &b2);
        pg_stats st2;
        pg_loss(&p, b2.s, b2.n, b2.w, NULL, &st2);
        for (int k = 0; k < b.n && ok; k++)
            for (int t = 0; t < b.s[k].n && ok; t++)
                if (b2.w[k][t] != b.w[k][t]) ok = 0, snprintf(why, sizeof why, "w[%d][%d] differs with went = NULL", k, t);
        if (ok && st2.loss != st.loss) ok = 0, snprintf(why, sizeof why, "loss differs with went = NULL");
        seqs_free(&b2);
    }
    /* micro-batches: the sequences in two parts with the whole mini-batch's
     * normalisers (norm_tokens, norm_seqs) give the same weights, and losses
     * that add up to the whole one */
    for (int cut = 1; ok && cut < b.n; cut += b.n - 1 > 1 ? b.n - 2 : 1) {
        seqbuf b2;
        seqs_load(arr(c, "seqs"), &b2);
        pg_params p2 = p;
        p2.norm_tokens = 0, p2.norm_seqs = 0;
        for (int k = 0; k < b2.n; k++)
            if (b2.s[k].keep && b2.s[k].n > 0) p2.norm_tokens += b2.s[k].n, p2.norm_seqs++;
        pg_stats s1, s2;
        pg_loss(&p2, b2.s, cut, b2.w, b2.went, &s1);
        pg_loss(&p2, b2.s + cut, b2.n - cut, b2.w + cut, b2.went + cut, &s2);
        if (!close_to(s1.loss + s2.loss, st.loss, 1e-12, 1e-15) || s1.tokens + s2.tokens != st.tokens)
            ok = 0, snprintf(why, sizeof why, "micro-batches at %d: loss %.17g + %.17g != %.17g", cut, s1.loss, s2.loss, st.loss);
        for (int k = 0; k < b.n && ok; k++)
            for (int t = 0; t < b.s[k].n && ok; t++)
                if (b2.w[k][t] != b.w[k][t] || b2.went[k][t] != b.went[k][t])
                    ok = 0, snprintf(why, sizeof why, "micro-batches at %d: w[%d][%d] = %.9g, whole %.9g", cut, k, t, b2.w[k][t], b.w[k][t]);
        seqs_free(&b2);
    }
    char label[160];
    snprintf(label, sizeof label, "%s%s", name, bd && json_array_size(bd) ? " [exact bound]" : "");
    report("loss", label, ok, why);
    seqs_free(&b);
}

static void test_sft(json_t *c, int i) {
    char why[256] = "", name[32];
    json_t *e = json_object_get(c, "expect");
    seqbuf b;
    seqs_load(arr(c, "seqs"), &b);
    double loss = pg_sft_loss(b.s, b.n, 0, b.w);
    int ok = close_to(loss, num(e, "loss"), 1e-6, 1e-14);
    if (!ok) snprintf(why, sizeof why, "loss = %.17g, want %.17g", loss, num(e, "loss"));
    if (ok) ok = cmp_weights(b.w, &b, arr(e, "w"), "w", why, sizeof why);
    snprintf(name, sizeof name, "sft %d (%d sequences)", i, b.n);
    report("sft", name, ok, why);
    seqs_free(&b);
}

int main(void) {
    json_error_t jerr;
    json_t *root = json_load_file(FIXTURE, 0, &jerr);
    if (!root) {
        fprintf(stderr, "%s:%d: %s (run from the source root; remake with tools/ref_pg.py)\n", FIXTURE, jerr.line, jerr.text);
        return 1;
    }
    json_t *a;
    size_t i;
    json_array_foreach(arr(root, "adv_cases"), i, a) test_adv(a);
    json_array_foreach(arr(root, "overlong_cases"), i, a) test_overlong(a);
    json_array_foreach(arr(root, "loss_cases"), i, a) test_loss(a);
    json_array_foreach(arr(root, "sft_cases"), i, a) test_sft(a, (int)i);
    json_decref(root);
    printf("%d cases, %d failed\n", n_case, n_fail);
    return n_fail ? 1 : 0;
}
