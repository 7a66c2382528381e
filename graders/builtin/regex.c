/* regex.c: the built-in `regex` grader: does the expanded input match a PCRE2
 * pattern (optionally: does a capture equal a reference)?
 *
 * YAML:
 *   type: regex
 *   input: "{{sample.output_text}}"   template (required)
 *   pattern: "^<answer>(.*)</answer>$"  PCRE2 pattern, literal (required)
 *   flags: "ims"                      optional, any of: i (ignore case),
 *                                     m (^ $ at line ends), s (. matches
 *                                     newline), x (extended syntax)
 *   ignore_case: true                 optional, same as flag i
 *   match: search                     search (default: anywhere, like
 *                                     Python re.search) | full (the whole
 *                                     input, like re.fullmatch)
 *   group: 1                          optional: capture number or name whose
 *                                     text is compared with `reference`
 *   reference: "{{item.answer}}"      optional template; without `group` the
 *                                     whole match is compared
 *   negate: false                     optional: score 1 - result
 *
 * Score 1 when the pattern matches (the first, leftmost match; with a
 * reference: and the capture equals the reference byte for byte, an unset
 * group never equals), else 0. The pattern is compiled once with PCRE2_UTF
 * and PCRE2_UCP (\d \w \s and case folding are Unicode-aware, as in Python
 * 3's re); subjects that are not valid UTF-8 are matched with
 * PCRE2_MATCH_INVALID_UTF (invalid bytes never match). A match that passes
 * PCRE2's match limit (catastrophic backtracking) is a grader error, not a
 * hang. Bad patterns fail create() with PCRE2's message and offset.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "builtin_common.h"

#include <pcre2.h>

#define G "regex"

typedef struct {
    const rft_host *host;
    gb_tmpl input, reference;
    int has_ref, negate;
    int group; /* capture number, -1 until a name is resolved */
    pcre2_code *re;
    pcre2_match_context *mctx;
} rx_state;

static void rx_destroy(void *p) {
    rx_state *s = p;
    if (!s) return;
    gb_tmpl_free(&s->input);
    gb_tmpl_free(&s->reference);
    if (s->re) pcre2_code_free(s->re);
    if (s->mctx) pcre2_match_context_free(s->mctx);
    free(s);
}

static int rx_create(const char *config_json, const rft_host *host, void **state, char *err, size_t cap) {
    static const char *const keys[] = {"input", "pattern", "flags", "ignore_case", "match", "group", "reference",
                                       "negate", "name", NULL};
    *state = NULL;
    json_t *cfg = gb_cfg_parse(config_json, G, err, cap);
    if (!cfg) return RFT_ERROR;
    rx_state *s = calloc(1, sizeof *s);
    const char *in = NULL, *pat = NULL, *flags = NULL, *mode = NULL, *ref = NULL, *nm = NULL;
    int icase = 0, rc = RFT_ERROR;
    if (!s) { gb_err(err, cap, G ": out of memory"); goto out; }
    s->host = host;
    if (gb_cfg_keys(cfg, G, keys, err, cap) || gb_cfg_str(cfg, G, "input", 1, NULL, &in, err, cap) ||
        gb_cfg_str(cfg, G, "pattern", 1, NULL, &pat, err, cap) || gb_cfg_str(cfg, G, "flags", 0, "", &flags, err, cap) ||
        gb_cfg_bool(cfg, G, "ignore_case", 0, &icase, err, cap) ||
        gb_cfg_str(cfg, G, "match", 0, "search", &mode, err, cap) ||
        gb_cfg_str(cfg, G, "reference", 0, NULL, &ref, err, cap) ||
        gb_cfg_bool(cfg, G, "negate", 0, &s->negate, err, cap) || gb_cfg_str(cfg, G, "name", 0, NULL, &nm, err, cap))
        goto out;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    if (icase) opts |= PCRE2_CASELESS;
    for (const char *f = flags; *f; f++) {
        switch (*f) {
        case 'i': opts |= PCRE2_CASELESS; break;
        case 'm': opts |= PCRE2_MULTILINE; break;
        case 's': opts |= PCRE2_DOTALL; break;
        case 'x': opts |= PCRE2_EXTENDED; break;
        default: gb_err(err, cap, G ": key 'flags': unknown flag '%c' (i, m, s, x)", *f); goto out;
        }
    }
    if (!strcmp(mode, "full")) opts |= PCRE2_ANCHORED | PCRE2_ENDANCHORED;
    else if (strcmp(mode, "search")) { gb_err(err, cap, G ": key 'match': unknown value '%s' (search, full)", mode); goto out; }
    int errcode;
    PCRE2_SIZE erroff;
    s->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &errcode, &erroff, NULL);
    if (!s->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        gb_err(err, cap, G ": key 'pattern': %s at offset %zu", (char *)msg, (size_t)erroff);
        goto out;
    }
    pcre2_jit_compile(s->re, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter is used when it fails */
    s->mctx = pcre2_match_context_create(NULL);
    if (!s->mctx) { gb_err(err, cap, G ": out of memory"); goto out; }
    pcre2_set_match_limit(s->mctx, 10000000);
    pcre2_set_depth_limit(s->mctx, 100000);
    uint32_t ncap = 0;
    pcre2_pattern_info(s->re, PCRE2_INFO_CAPTURECOUNT, &ncap);
    json_t *g = json_object_get(cfg, "group");
    s->group = 0;
    if (g) {
        if (json_is_integer(g)) {
            json_int_t v = json_integer_value(g);
            if (v < 0 || (uint64_t)v > ncap) {
                gb_err(err, cap, G ": key 'group': %lld but the pattern has %u capture groups", (long long)v, ncap);
                goto out;
            }
            s->group = (int)v;
        } else if (json_is_string(g)) {
            int n = pcre2_substring_number_from_name(s->re, (PCRE2_SPTR)json_string_value(g));
            if (n < 0) { gb_err(err, cap, G ": key 'group': the pattern has no group named '%s'", json_string_value(g)); goto out; }
            s->group = n;
        } else { gb_err(err, cap, G ": key 'group' must be a number or a name"); goto out; }
        if (!ref) { gb_err(err, cap, G ": key 'group' needs a 'reference' to compare the capture with"); goto out; }
    }
    if (ref) {
        s->has_ref = 1;
        if (gb_tmpl_parse(&s->reference, ref, G, "reference", err, cap)) goto out;
    }
    if (gb_tmpl_parse(&s->input, in, G, "input", err, cap)) goto out;
    *state = s;
    s = NULL;
    rc = RFT_OK;
out:
    rx_destroy(s);
    json_decref(cfg);
    return rc;
}

static int rx_grade(void *p, const rft_sample *sample, const rft_item *item, double *score, char *err, size_t cap) {
    rx_state *s = p;
    gb_ctx c;
    gb_buf a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    int rc = RFT_ERROR;
    gb_ctx_init(&c, s->host, sample, item);
    if (gb_tmpl_expand(&s->input, &c, &a, G, err, cap)) goto out;
    if (s->has_ref && gb_tmpl_expand(&s->reference, &c, &b, G, err, cap)) goto out;
    md = pcre2_match_data_create_from_pattern(s->re, NULL);
    if (!md) { gb_err(err, cap, G ": out of memory"); goto out; }
    int m = pcre2_match(s->re, (PCRE2_SPTR)a.p, a.len, 0, 0, md, s->mctx);
    double v;
    if (m == PCRE2_ERROR_NOMATCH) v = 0;
    else if (m < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(m, msg, sizeof msg);
        gb_err(err, cap, G ": matching failed: %s", (char *)msg);
        goto out;
    } else if (!s->has_ref) v = 1;
    else {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        uint32_t npairs = pcre2_get_ovector_count(md);
        v = 0;
        if ((uint32_t)s->group < npairs && ov[2 * s->group] != PCRE2_UNSET) {
            size_t st = ov[2 * s->group], en = ov[2 * s->group + 1];
            v = en >= st && en - st == b.len && !memcmp(a.p + st, b.p, b.len);
        }
    }
    *score = s->negate ? 1 - v : v;
    rc = RFT_OK;
out:
    if (md) pcre2_match_data_free(md);
    gb_buf_free(&a);
    gb_buf_free(&b);
    gb_ctx_free(&c);
    return rc;
}

static const rft_grader rx_grader = {
    .abi_version = RFT_GRADER_ABI_VERSION,
    .name = G,
    .flags = RFT_GRADER_THREADSAFE,
    .create = rx_create,
    .grade = rx_grade,
    .destroy = rx_destroy,
};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &rx_grader; }
