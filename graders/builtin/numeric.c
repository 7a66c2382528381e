/* numeric.c: the built-in `numeric` grader: extracts a number from the
 * expanded input and compares it with the reference within a tolerance.
 *
 * YAML:
 *   type: numeric
 *   input: "{{sample.output_text}}"   template (required)
 *   reference: "{{item.answer}}"      template (required); its last number
 *                                     is the reference ("#### 42" -> 42); a
 *                                     reference without a number is a grader
 *                                     error
 *   extract: last                     which number of the input (default last):
 *                                       last | first
 *                                       only      the whole input (trimmed) is
 *                                                 one number, else score 0
 *                                       boxed     the last number inside the
 *                                                 last \boxed{...}
 *                                       tag:NAME  the last number inside the
 *                                                 last <NAME>...</NAME>
 *   pattern: "answer: (.*)"           optional PCRE2 pattern instead of
 *                                     extract: the last number inside group 1
 *                                     (the whole match when the pattern has no
 *                                     group) of the last match
 *   abs_tol: 0                        absolute tolerance (default 0)
 *   rel_tol: 1e-9                     relative tolerance (default 1e-9)
 *
 * Score 1 when |x - ref| <= max(rel_tol * max(|x|, |ref|), abs_tol) (Python's
 * math.isclose), 0 when it is not or when the input holds no number.
 *
 * Numbers (ASCII digits), found left to right without overlap:
 *   42  -7  +3  −2 (U+2212)  3.14  .5  1,234,567 (comma groups of exactly
 *   three digits; "1,23" is 1 and 23)  1.5e-3  2E6  3/4 (a fraction; a zero
 *   denominator makes it no number)  \frac{3}{4} \dfrac{..}{..} \tfrac{..}{..}
 *   A sign belongs to the number only when the character before it is not a
 *   letter, digit or '.', so "3-4" is 3 and 4 and "x = -4" is -4. "%" and
 *   currency signs are ignored ("50%" is 50). Values that overflow a double
 *   are no number.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "builtin_common.h"

#include <pcre2.h>

#define G "numeric"

/* The number syntax; tools/ref_graders.py uses the same expression with
   Python's re as the independent reference for the value conversions. */
#define MANT "(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\\.[0-9]+)?|\\.[0-9]+"
static const char NUM_RE[] =
    "\\\\[dt]?frac\\{\\s*([-+]?[0-9]+(?:\\.[0-9]+)?)\\s*\\}\\{\\s*([-+]?[0-9]+(?:\\.[0-9]+)?)\\s*\\}"
    "|((?:(?<![A-Za-z0-9.])[-+\\x{2212}])?(?:" MANT ")(?:[eE][-+]?[0-9]+)?)(?:/(" MANT "))?";

enum { X_LAST, X_FIRST, X_ONLY, X_BOXED, X_TAG, X_PATTERN };

typedef struct {
    const rft_host *host;
    gb_tmpl input, reference;
    int mode;
    char *tag_open, *tag_close;
    double abs_tol, rel_tol;
    pcre2_code *num, *pat;
    uint32_t pat_groups;
    pcre2_match_context *mctx;
} nu_state;

static void nu_destroy(void *p) {
    nu_state *s = p;
    if (!s) return;
    gb_tmpl_free(&s->input);
    gb_tmpl_free(&s->reference);
    free(s->tag_open);
    free(s->tag_close);
    if (s->num) pcre2_code_free(s->num);
    if (s->pat) pcre2_code_free(s->pat);
    if (s->mctx) pcre2_match_context_free(s->mctx);
    free(s);
}

static pcre2_code *compile(const char *pat, char *err, size_t cap, const char *key) {
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                                   &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        gb_err(err, cap, G ": key '%s': %s at offset %zu", key, (char *)msg, (size_t)off);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

static int nu_create(const char *config_json, const rft_host *host, void **state, char *err, size_t cap) {
    static const char *const keys[] = {"input", "reference", "extract", "pattern", "abs_tol", "rel_tol", "name", NULL};
    *state = NULL;
    json_t *cfg = gb_cfg_parse(config_json, G, err, cap);
    if (!cfg) return RFT_ERROR;
    nu_state *s = calloc(1, sizeof *s);
    const char *in = NULL, *ref = NULL, *ex = NULL, *pat = NULL, *nm = NULL;
    int rc = RFT_ERROR;
    if (!s) { gb_err(err, cap, G ": out of memory"); goto out; }
    s->host = host;
    if (gb_cfg_keys(cfg, G, keys, err, cap) || gb_cfg_str(cfg, G, "input", 1, NULL, &in, err, cap) ||
        gb_cfg_str(cfg, G, "reference", 1, NULL, &ref, err, cap) ||
        gb_cfg_str(cfg, G, "extract", 0, NULL, &ex, err, cap) || gb_cfg_str(cfg, G, "pattern", 0, NULL, &pat, err, cap) ||
        gb_cfg_num(cfg, G, "abs_tol", 0.0, &s->abs_tol, err, cap) ||
        gb_cfg_num(cfg, G, "rel_tol", 1e-9, &s->rel_tol, err, cap) || gb_cfg_str(cfg, G, "name", 0, NULL, &nm, err, cap))
        goto out;
    if (s->abs_tol < 0 || s->rel_tol < 0) { gb_err(err, cap, G ": keys 'abs_tol' and 'rel_tol' must be >= 0"); goto out; }
    if (ex && pat) { gb_err(err, cap, G ": give 'extract' or 'pattern', not both"); goto out; }
    s->mode = X_LAST;
    if (pat) {
        s->mode = X_PATTERN;
        if (!(s->pat = compile(pat, err, cap, "pattern"))) goto out;
        pcre2_pattern_info(s->pat, PCRE2_INFO_CAPTURECOUNT, &s->pat_groups);
    } else if (ex) {
        if (!strcmp(ex, "last")) s->mode = X_LAST;
        else if (!strcmp(ex, "first")) s->mode = X_FIRST;
        else if (!strcmp(ex, "only")) s->mode = X_ONLY;
        else if (!strcmp(ex, "boxed")) s->mode = X_BOXED;
        else if (!strncmp(ex, "tag:", 4) && ex[4] && !strpbrk(ex + 4, "<>/ ")) {
            s->mode = X_TAG;
            size_t n = strlen(ex + 4);
            s->tag_open = malloc(n + 3);
            s->tag_close = malloc(n + 4);
            if (!s->tag_open || !s->tag_close) { gb_err(err, cap, G ": out of memory"); goto out; }
            sprintf(s->tag_open, "<%s>", ex + 4);
            sprintf(s->tag_close, "</%s>", ex + 4);
        } else {
            gb_err(err, cap, G ": key 'extract': unknown value '%s' (last, first, only, boxed, tag:NAME)", ex);
            goto out;
        }
    }
    if (!(s->num = compile(NUM_RE, err, cap, "(number syntax)"))) goto out;
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->mctx) { gb_err(err, cap, G ": out of memory"); goto out; }
    pcre2_set_match_limit(s->mctx, 10000000);
    if (gb_tmpl_parse(&s->input, in, G, "input", err, cap)) goto out;
    if (gb_tmpl_parse(&s->reference, ref, G, "reference", err, cap)) goto out;
    *state = s;
    s = NULL;
    rc = RFT_OK;
out:
    nu_destroy(s);
    json_decref(cfg);
    return rc;
}

/* value of a number text t[0..n): commas dropped, U+2212 read as '-' */
static double num_value(const char *t, size_t n) {
    char small[256], *buf = n < sizeof small ? small : malloc(n + 1);
    size_t k = 0;
    if (!buf) return NAN;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == ',') continue;
        if ((unsigned char)t[i] == 0xE2 && i + 2 < n && (unsigned char)t[i + 1] == 0x88 && (unsigned char)t[i + 2] == 0x92) {
            buf[k++] = '-';
            i += 2;
            continue;
        }
        buf[k++] = t[i];
    }
    buf[k] = 0;
    double v = strtod(buf, NULL);
    if (buf != small) free(buf);
    return v;
}

/* Numbers of s[0..n) in order; calls back each finite value with its span.
   Returns the count, or -1 on a matching failure (message in err). */
typedef struct {
    double first, last;
    size_t count;
    size_t last_start, last_end;
} nums;

static int scan_numbers(const nu_state *st, const char *s, size_t n, nums *out, char *err, size_t cap) {
    memset(out, 0, sizeof *out);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(st->num, NULL);
    if (!md) return gb_err(err, cap, G ": out of memory");
    size_t off = 0;
    while (off <= n) {
        int m = pcre2_match(st->num, (PCRE2_SPTR)s, n, off, 0, md, st->mctx);
        if (m == PCRE2_ERROR_NOMATCH) break;
        if (m < 0) {
            pcre2_match_data_free(md);
            return gb_err(err, cap, G ": number scan failed (%d)", m);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        double v;
        if (ov[2] != PCRE2_UNSET) { /* \frac{a}{b} */
            double a = num_value(s + ov[2], ov[3] - ov[2]), b = num_value(s + ov[4], ov[5] - ov[4]);
            v = b != 0 ? a / b : NAN;
        } else {
            v = num_value(s + ov[6], ov[7] - ov[6]);
            if (m > 4 && ov[8] != PCRE2_UNSET) {
                double d = num_value(s + ov[8], ov[9] - ov[8]);
                v = d != 0 ? v / d : NAN;
            }
        }
        if (isfinite(v)) {
            if (!out->count) out->first = v;
            out->last = v;
            out->last_start = ov[0];
            out->last_end = ov[1];
            out->count++;
        }
        off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
    }
    pcre2_match_data_free(md);
    return 0;
}

/* last occurrence of needle in hay[0..n) at or after from, or NULL */
static const char *last_of(const char *hay, size_t n, const char *needle) {
    size_t k = strlen(needle);
    const char *best = NULL, *p = hay;
    while ((p = memmem(p, n - (size_t)(p - hay), needle, k))) { best = p; p++; }
    return best;
}

/* the part of the input the number is taken from: [*b, *e) ; 0 = none */
static int narrow(const nu_state *s, const char *t, size_t n, size_t *b, size_t *e, char *err, size_t cap) {
    *b = 0;
    *e = n;
    if (s->mode == X_BOXED) {
        const char *p = last_of(t, n, "\\boxed{");
        if (!p) return 0;
        size_t i = (size_t)(p - t) + 7, depth = 1, j = i;
        for (; j < n; j++) {
            if (t[j] == '{') depth++;
            else if (t[j] == '}' && --depth == 0) break;
        }
        if (j >= n) return 0; /* unbalanced */
        *b = i;
        *e = j;
        return 1;
    }
    if (s->mode == X_TAG) {
        /* last <tag>...</tag>: the last close tag, and the last open tag before it */
        const char *c = last_of(t, n, s->tag_close);
        if (!c) return 0;
        const char *o = last_of(t, (size_t)(c - t), s->tag_open);
        if (!o) return 0;
        *b = (size_t)(o - t) + strlen(s->tag_open);
        *e = (size_t)(c - t);
        return 1;
    }
    if (s->mode == X_PATTERN) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(s->pat, NULL);
        if (!md) return gb_err(err, cap, G ": out of memory");
        size_t off = 0;
        int found = 0;
        while (off <= n) {
            int m = pcre2_match(s->pat, (PCRE2_SPTR)t, n, off, 0, md, s->mctx);
            if (m == PCRE2_ERROR_NOMATCH) break;
            if (m < 0) {
                pcre2_match_data_free(md);
                return gb_err(err, cap, G ": key 'pattern': matching failed (%d)", m);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            int g = s->pat_groups ? 1 : 0;
            if (ov[2 * g] != PCRE2_UNSET) { *b = ov[2 * g]; *e = ov[2 * g + 1]; found = 1; }
            else found = 0;
            off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
            /* step over a whole UTF-8 character after an empty match */
            while (ov[1] == ov[0] && off < n && ((unsigned char)t[off] & 0xC0) == 0x80) off++;
        }
        pcre2_match_data_free(md);
        return found;
    }
    return 1;
}

static int nu_grade(void *p, const rft_sample *sample, const rft_item *item, double *score, char *err, size_t cap) {
    nu_state *s = p;
    gb_ctx c;
    gb_buf a = {0}, r = {0};
    int rc = RFT_ERROR;
    gb_ctx_init(&c, s->host, sample, item);
    if (gb_tmpl_expand(&s->input, &c, &a, G, err, cap) || gb_tmpl_expand(&s->reference, &c, &r, G, err, cap)) goto out;
    nums rn, xn;
    if (scan_numbers(s, r.p, r.len, &rn, err, cap)) goto out;
    if (!rn.count) {
        gb_err(err, cap, G ": the reference '%.80s' holds no number", r.p);
        goto out;
    }
    size_t b, e;
    int got = narrow(s, a.p, a.len, &b, &e, err, cap);
    if (got < 0) goto out;
    *score = 0;
    rc = RFT_OK;
    if (!got) goto out;
    if (scan_numbers(s, a.p + b, e - b, &xn, err, cap)) { rc = RFT_ERROR; goto out; }
    if (!xn.count) goto out;
    double x;
    if (s->mode == X_FIRST) x = xn.first;
    else if (s->mode == X_ONLY) {
        /* exactly one number and nothing but whitespace around it */
        size_t i = b, j = e;
        while (i < j && (a.p[i] == ' ' || a.p[i] == '\t' || a.p[i] == '\n' || a.p[i] == '\r')) i++;
        while (j > i && (a.p[j - 1] == ' ' || a.p[j - 1] == '\t' || a.p[j - 1] == '\n' || a.p[j - 1] == '\r')) j--;
        if (xn.count != 1 || b + xn.last_start != i || b + xn.last_end != j) goto out;
        x = xn.last;
    } else x = xn.last;
    double y = rn.last, d = fabs(x - y), m = fabs(x) > fabs(y) ? fabs(x) : fabs(y);
    double tol = s->rel_tol * m > s->abs_tol ? s->rel_tol * m : s->abs_tol;
    *score = (x == y || d <= tol) ? 1.0 : 0.0;
out:
    gb_buf_free(&a);
    gb_buf_free(&r);
    gb_ctx_free(&c);
    return rc;
}

static const rft_grader nu_grader = {
    .abi_version = RFT_GRADER_ABI_VERSION,
    .name = G,
    .flags = RFT_GRADER_THREADSAFE,
    .create = nu_create,
    .grade = nu_grade,
    .destroy = nu_destroy,
};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &nu_grader; }
