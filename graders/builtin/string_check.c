/* string_check.c: the built-in `string_check` grader (OpenAI string check
 * semantics): compares the expanded input with the expanded reference.
 *
 * YAML:
 *   type: string_check
 *   input: "{{sample.output_text}}"   template (required)
 *   reference: "{{item.answer}}"      template (required)
 *   operation: eq                     eq | ne | like | ilike (required)
 *
 * Score 1 or 0:
 *   eq     input == reference (byte for byte)
 *   ne     input != reference
 *   like   input contains reference
 *   ilike  input contains reference, ignoring case: both sides are decoded
 *          as UTF-8 (invalid bytes read as U+FFFD) and lowered exactly like
 *          Python's str.lower() (Unicode 14 table, U+0130 -> "i\u0307",
 *          final sigma), then searched.
 * No trimming: "42\n" is not eq "42". An item without the referenced field
 * is a grader error (see builtin_common.h for templates).
 */
#include "builtin_common.h"

#define G "string_check"

enum { OP_EQ, OP_NE, OP_LIKE, OP_ILIKE };

typedef struct {
    const rft_host *host;
    gb_tmpl input, reference;
    int op;
} sc_state;

static void sc_destroy(void *p) {
    sc_state *s = p;
    if (!s) return;
    gb_tmpl_free(&s->input);
    gb_tmpl_free(&s->reference);
    free(s);
}

static int sc_create(const char *config_json, const rft_host *host, void **state, char *err, size_t cap) {
    static const char *const keys[] = {"input", "reference", "operation", "name", NULL};
    *state = NULL;
    json_t *cfg = gb_cfg_parse(config_json, G, err, cap);
    if (!cfg) return RFT_ERROR;
    sc_state *s = calloc(1, sizeof *s);
    const char *in = NULL, *ref = NULL, *op = NULL, *nm = NULL;
    int rc = RFT_ERROR;
    if (!s) { gb_err(err, cap, G ": out of memory"); goto out; }
    s->host = host;
    if (gb_cfg_keys(cfg, G, keys, err, cap) || gb_cfg_str(cfg, G, "input", 1, NULL, &in, err, cap) ||
        gb_cfg_str(cfg, G, "reference", 1, NULL, &ref, err, cap) ||
        gb_cfg_str(cfg, G, "operation", 1, NULL, &op, err, cap) ||
        gb_cfg_str(cfg, G, "name", 0, NULL, &nm, err, cap))
        goto out;
    if (!strcmp(op, "eq")) s->op = OP_EQ;
    else if (!strcmp(op, "ne")) s->op = OP_NE;
    else if (!strcmp(op, "like")) s->op = OP_LIKE;
    else if (!strcmp(op, "ilike")) s->op = OP_ILIKE;
    else { gb_err(err, cap, G ": key 'operation': unknown value '%s' (eq, ne, like, ilike)", op); goto out; }
    if (gb_tmpl_parse(&s->input, in, G, "input", err, cap)) goto out;
    if (gb_tmpl_parse(&s->reference, ref, G, "reference", err, cap)) goto out;
    *state = s;
    s = NULL;
    rc = RFT_OK;
out:
    sc_destroy(s);
    json_decref(cfg);
    return rc;
}

/* does hay[0..n) contain needle[0..m)? (code points) */
static int u32_contains(const uint32_t *hay, size_t n, const uint32_t *needle, size_t m) {
    if (m == 0) return 1;
    if (m > n) return 0;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, m * sizeof *needle)) return 1;
    return 0;
}

static int sc_grade(void *p, const rft_sample *sample, const rft_item *item, double *score, char *err, size_t cap) {
    sc_state *s = p;
    gb_ctx c;
    gb_buf a = {0}, b = {0};
    int rc = RFT_ERROR;
    gb_ctx_init(&c, s->host, sample, item);
    if (gb_tmpl_expand(&s->input, &c, &a, G, err, cap) || gb_tmpl_expand(&s->reference, &c, &b, G, err, cap))
        goto out;
    switch (s->op) {
    case OP_EQ: *score = a.len == b.len && !memcmp(a.p, b.p, a.len); break;
    case OP_NE: *score = !(a.len == b.len && !memcmp(a.p, b.p, a.len)); break;
    case OP_LIKE: *score = b.len == 0 || memmem(a.p, a.len, b.p, b.len) != NULL; break;
    case OP_ILIKE: {
        uint32_t *ua = NULL, *ub = NULL, *la = NULL, *lb = NULL;
        size_t na, nb, nla, nlb;
        int ok = !gb_utf8_decode(a.p, a.len, &ua, &na) && !gb_utf8_decode(b.p, b.len, &ub, &nb) &&
                 (la = gb_lower_all(ua, na, &nla)) && (lb = gb_lower_all(ub, nb, &nlb));
        if (ok) *score = u32_contains(la, nla, lb, nlb);
        free(ua); free(ub); free(la); free(lb);
        if (!ok) { gb_err(err, cap, G ": out of memory"); goto out; }
        break;
    }
    }
    rc = RFT_OK;
out:
    gb_buf_free(&a);
    gb_buf_free(&b);
    gb_ctx_free(&c);
    return rc;
}

static const rft_grader sc_grader = {
    .abi_version = RFT_GRADER_ABI_VERSION,
    .name = G,
    .flags = RFT_GRADER_THREADSAFE,
    .create = sc_create,
    .grade = sc_grade,
    .destroy = sc_destroy,
};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &sc_grader; }
