/* graders/examples/countdown.c: an example rft grader for the Countdown
 * numbers game (the TinyZero / "R1-Zero" task): the item has `nums` (the
 * numbers to use, e.g. [3, 7, 25, 50]) and `target` (e.g. 21); the model must
 * write an equation using every number exactly once, inside
 * <answer>...</answer>. Scores follow TinyZero's countdown reward:
 *   1.0           the last <answer>...</answer> (on one line; matched as
 *                 Python's re.finditer(r'<answer>(.*?)</answer>')) is an equation
 *                 of + - * / ( ) and numbers that uses exactly the given
 *                 numbers and equals the target (within 1e-5)
 *   format_score  (default 0.1) an answer is there but is wrong, uses other
 *                 numbers, has other characters or divides by zero
 *   0.0           no <answer> tag
 * Config: {"format_score": 0.1, "score": 1.0}. Thread-safe (no mutable state).
 *
 * Build (out of tree):
 *   cc -O2 -shared -fPIC $(pkg-config --cflags rft-grader) countdown.c -o countdown.so
 * Use:
 *   graders:
 *     countdown:
 *       plugin: ./countdown.so
 *       config: {format_score: 0.1}
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rft_grader.h"

typedef struct {
    const rft_host *host;
    double score, format_score;
} countdown;

/* a number value of "key": in a flat JSON object (enough for this config) */
static int config_number(const char *json, const char *key, double *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p) return 0;
    char *end;
    double v = strtod(p + strlen(pat), &end);
    if (end == p + strlen(pat)) return -1;
    *out = v;
    return 1;
}

static int cd_create(const char *config_json, const rft_host *host, void **state, char *err, size_t err_cap) {
    countdown *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, err_cap, "out of memory");
        return RFT_ERROR;
    }
    s->host = host;
    s->score = 1.0;
    s->format_score = 0.1;
    if (config_number(config_json, "score", &s->score) < 0 ||
        config_number(config_json, "format_score", &s->format_score) < 0) {
        snprintf(err, err_cap, "config: score and format_score must be numbers");
        free(s);
        return RFT_ERROR;
    }
    *state = s;
    return RFT_OK;
}

/* ---- the equation: recursive descent over doubles ---- */
typedef struct {
    const char *p, *end;
    int bad;
    long nums[64];
    int n_nums;
} eq;

static void eq_ws(eq *e) {
    while (e->p < e->end && isspace((unsigned char)*e->p)) e->p++;
}

static double eq_sum(eq *e);

static double eq_atom(eq *e) {
    eq_ws(e);
    if (e->p >= e->end) {
        e->bad = 1;
        return 0;
    }
    if (*e->p == '(') {
        e->p++;
        double v = eq_sum(e);
        eq_ws(e);
        if (e->p >= e->end || *e->p != ')') e->bad = 1;
        else e->p++;
        return v;
    }
    if (*e->p == '-' || *e->p == '+') {
        int neg = *e->p == '-';
        e->p++;
        double v = eq_atom(e);
        return neg ? -v : v;
    }
    if (isdigit((unsigned char)*e->p) || *e->p == '.') {
        /* every run of digits counts as a number used (as TinyZero's \d+) */
        const char *q = e->p;
        while (q < e->end && (isdigit((unsigned char)*q) || *q == '.')) q++;
        char buf[64];
        size_t len = (size_t)(q - e->p);
        if (len >= sizeof buf) {
            e->bad = 1;
            return 0;
        }
        memcpy(buf, e->p, len);
        buf[len] = 0;
        for (const char *d = buf; *d;) {
            if (!isdigit((unsigned char)*d)) {
                d++;
                continue;
            }
            if (e->n_nums < 64) e->nums[e->n_nums++] = strtol(d, NULL, 10);
            while (isdigit((unsigned char)*d)) d++;
        }
        char *end;
        double v = strtod(buf, &end);
        if (*end) e->bad = 1; /* "1.2.3" */
        e->p = q;
        return v;
    }
    e->bad = 1;
    return 0;
}

static double eq_product(eq *e) {
    double v = eq_atom(e);
    for (;;) {
        eq_ws(e);
        if (e->bad || e->p >= e->end || (*e->p != '*' && *e->p != '/')) return v;
        char op = *e->p++;
        if (e->p < e->end && *e->p == op) { /* ** and // are not arithmetic here */
            e->bad = 1;
            return 0;
        }
        double r = eq_atom(e);
        if (op == '*') v *= r;
        else if (r == 0) e->bad = 1; /* division by zero */
        else v /= r;
    }
}

static double eq_sum(eq *e) {
    double v = eq_product(e);
    for (;;) {
        eq_ws(e);
        if (e->bad || e->p >= e->end || (*e->p != '+' && *e->p != '-')) return v;
        char op = *e->p++;
        double r = eq_product(e);
        v = op == '+' ? v + r : v - r;
    }
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* "[3, 7, 25]" -> numbers; -1 if malformed */
static int parse_nums(const char *s, long *out, int cap) {
    int n = 0;
    const char *p = s;
    while (*p == ' ') p++;
    if (*p++ != '[') return -1;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ']') return n;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || n == cap) return -1;
        out[n++] = v;
        p = end;
    }
}

static int cd_grade(void *state, const rft_sample *sample, const rft_item *item, double *score, char *err,
                    size_t err_cap) {
    countdown *s = state;
    const char *nums_s = s->host->item_get(item, "nums", NULL);
    const char *target_s = s->host->item_get(item, "target", NULL);
    if (!nums_s || !target_s) {
        snprintf(err, err_cap, "the item needs `nums` (array of integers) and `target` (a number)");
        return RFT_ERROR;
    }
    long nums[64];
    int n = parse_nums(nums_s, nums, 64);
    char *tend;
    double target = strtod(target_s, &tend);
    if (n < 0 || tend == target_s) {
        snprintf(err, err_cap, "bad item: nums=%.60s target=%.30s", nums_s, target_s);
        return RFT_ERROR;
    }
    /* the last match of <answer>(.*?)</answer> where . does not cross a
       line break, scanning like Python's re.finditer */
    const char *text = sample->output_text, *best = NULL, *best_end = NULL;
    const char *p = strstr(text, "<answer>");
    while (p) {
        const char *a = p + 8;
        const char *close = strstr(a, "</answer>");
        const char *nl = strchr(a, '\n');
        if (close && (!nl || nl > close)) {
            best = a, best_end = close;
            p = strstr(close + 9, "<answer>");
        } else {
            p = strstr(p + 1, "<answer>");
        }
    }
    if (!best) {
        *score = 0.0;
        return RFT_OK;
    }
    eq e = {.p = best, .end = best_end};
    double v = eq_sum(&e);
    eq_ws(&e);
    if (e.p != e.end) e.bad = 1;
    int ok = !e.bad && e.n_nums == n;
    if (ok) {
        qsort(e.nums, n, sizeof(long), cmp_long);
        qsort(nums, n, sizeof(long), cmp_long);
        for (int i = 0; i < n; i++) ok &= e.nums[i] == nums[i];
    }
    *score = ok && fabs(v - target) < 1e-5 ? s->score : s->format_score;
    return RFT_OK;
}

static void cd_destroy(void *state) { free(state); }

static const rft_grader countdown_grader = {
    .abi_version = RFT_GRADER_ABI_VERSION,
    .name = "countdown",
    .flags = RFT_GRADER_THREADSAFE,
    .create = cd_create,
    .grade = cd_grade,
    .destroy = cd_destroy,
};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &countdown_grader; }
