/* json.c: the built-in `json` grader: the sample must be JSON (optionally
 * with required fields of given types); scores the share of listed fields
 * equal to the reference's.
 *
 * YAML:
 *   type: json
 *   input: "{{sample.output_text}}"   template (required): the text parsed
 *   reference: "{{item.expected}}"    optional: a JSON value written in the
 *                                     YAML, or a template. A template that is
 *                                     exactly "{{item.PATH}}" takes that field
 *                                     of the row as JSON (so "42" and 42
 *                                     differ); any other template must expand
 *                                     to JSON text. Absent field or bad JSON:
 *                                     grader error.
 *   fields: ["name", "address.city", "tags[0]"]
 *                                     optional paths compared between the
 *                                     sample and the reference
 *   required: {"name": "string", "age": "integer"}
 *                                     optional paths that must exist, with a
 *                                     type: string number integer boolean
 *                                     array object null any
 *   scoring: share                    share (default): the share of `fields`
 *                                     that are equal | all: 1 only when all are
 *
 * Parsing: the input with surrounding whitespace; when that is not JSON and
 * the text holds a fenced block (``` or ```json, a newline, the content,
 * ```), the first such block. Not JSON (or integers beyond 64 bits, NaN,
 * invalid UTF-8) -> score 0.
 * Score: 0 when not JSON or a `required` path is missing or of the wrong type;
 * else with `fields`: the share (or all) of fields whose values are equal
 * (a field absent from the sample is unequal; absent from the reference is a
 * grader error); else with `reference`: 1 when the whole values are equal;
 * else 1. Equality is JSON equality: objects by key set regardless of order,
 * arrays element by element, numbers by value (1 == 1.0), true != 1. The
 * type "integer" also accepts a number with an integral value (2.0), as JSON
 * Schema does.
 */
#include "builtin_common.h"

#define G "json"

enum { T_STRING, T_NUMBER, T_INTEGER, T_BOOLEAN, T_ARRAY, T_OBJECT, T_NULL, T_ANY };
static const char *const TYPE_NAMES[] = {"string", "number", "integer", "boolean", "array", "object", "null", "any"};

typedef struct {
    const rft_host *host;
    gb_tmpl input, reference;
    int ref_kind;        /* 0 none, 1 literal JSON, 2 item path, 3 template text */
    json_t *ref_literal; /* ref_kind 1 */
    char *ref_path;      /* ref_kind 2 */
    char **fields;
    size_t n_fields;
    char **req_path;
    int *req_type;
    size_t n_req;
    int all;
} js_state;

static void js_destroy(void *p) {
    js_state *s = p;
    if (!s) return;
    gb_tmpl_free(&s->input);
    gb_tmpl_free(&s->reference);
    if (s->ref_literal) json_decref(s->ref_literal);
    free(s->ref_path);
    for (size_t i = 0; i < s->n_fields; i++) free(s->fields[i]);
    free(s->fields);
    for (size_t i = 0; i < s->n_req; i++) free(s->req_path[i]);
    free(s->req_path);
    free(s->req_type);
    free(s);
}

static int js_create(const char *config_json, const rft_host *host, void **state, char *err, size_t cap) {
    static const char *const keys[] = {"input", "reference", "fields", "required", "scoring", "name", NULL};
    *state = NULL;
    json_t *cfg = gb_cfg_parse(config_json, G, err, cap);
    if (!cfg) return RFT_ERROR;
    js_state *s = calloc(1, sizeof *s);
    const char *in = NULL, *scoring = NULL, *nm = NULL;
    int rc = RFT_ERROR;
    if (!s) { gb_err(err, cap, G ": out of memory"); goto out; }
    s->host = host;
    if (gb_cfg_keys(cfg, G, keys, err, cap) || gb_cfg_str(cfg, G, "input", 1, NULL, &in, err, cap) ||
        gb_cfg_str(cfg, G, "scoring", 0, "share", &scoring, err, cap) || gb_cfg_str(cfg, G, "name", 0, NULL, &nm, err, cap))
        goto out;
    if (!strcmp(scoring, "all")) s->all = 1;
    else if (strcmp(scoring, "share")) { gb_err(err, cap, G ": key 'scoring': unknown value '%s' (share, all)", scoring); goto out; }
    json_t *ref = json_object_get(cfg, "reference");
    if (ref && json_is_string(ref)) {
        const char *t = json_string_value(ref);
        if (gb_tmpl_parse(&s->reference, t, G, "reference", err, cap)) goto out;
        if (s->reference.n == 1 && s->reference.parts[0].kind == GB_ITEM) {
            s->ref_kind = 2;
            if (!(s->ref_path = strdup(s->reference.parts[0].text))) { gb_err(err, cap, G ": out of memory"); goto out; }
        } else s->ref_kind = 3;
    } else if (ref) {
        s->ref_kind = 1;
        s->ref_literal = json_incref(ref);
    }
    json_t *f = json_object_get(cfg, "fields");
    if (f) {
        if (!json_is_array(f)) { gb_err(err, cap, G ": key 'fields' must be a list of paths"); goto out; }
        if (!s->ref_kind) { gb_err(err, cap, G ": key 'fields' needs a 'reference' to compare with"); goto out; }
        s->n_fields = json_array_size(f);
        s->fields = calloc(s->n_fields + 1, sizeof *s->fields);
        if (!s->fields) { gb_err(err, cap, G ": out of memory"); goto out; }
        for (size_t i = 0; i < s->n_fields; i++) {
            json_t *v = json_array_get(f, i);
            if (!json_is_string(v) || !gb_path_ok(json_string_value(v))) {
                gb_err(err, cap, G ": key 'fields': entry %zu must be a path like \"a.b[0]\"", i);
                goto out;
            }
            if (!(s->fields[i] = strdup(json_string_value(v)))) { gb_err(err, cap, G ": out of memory"); goto out; }
        }
        if (!s->n_fields) { gb_err(err, cap, G ": key 'fields' is empty"); goto out; }
    }
    json_t *r = json_object_get(cfg, "required");
    if (r) {
        if (!json_is_object(r)) { gb_err(err, cap, G ": key 'required' must map paths to types"); goto out; }
        size_t n = json_object_size(r);
        s->req_path = calloc(n + 1, sizeof *s->req_path);
        s->req_type = calloc(n + 1, sizeof *s->req_type);
        if (!s->req_path || !s->req_type) { gb_err(err, cap, G ": out of memory"); goto out; }
        const char *k;
        json_t *v;
        json_object_foreach(r, k, v) {
            int t = -1;
            for (int i = 0; i < 8 && json_is_string(v); i++)
                if (!strcmp(json_string_value(v), TYPE_NAMES[i])) t = i;
            if (t < 0 || !gb_path_ok(k)) {
                gb_err(err, cap, G ": key 'required': '%s' needs a path and one of the types string, number, integer, "
                                   "boolean, array, object, null, any", k);
                goto out;
            }
            if (!(s->req_path[s->n_req] = strdup(k))) { gb_err(err, cap, G ": out of memory"); goto out; }
            s->req_type[s->n_req++] = t;
        }
    }
    if (gb_tmpl_parse(&s->input, in, G, "input", err, cap)) goto out;
    *state = s;
    s = NULL;
    rc = RFT_OK;
out:
    js_destroy(s);
    json_decref(cfg);
    return rc;
}

/* JSON equality; numbers by value, true != 1 */
static int js_equal(const json_t *a, const json_t *b) {
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) return 0;
    switch (json_typeof(a)) {
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            json_t *w = json_object_get(b, k);
            if (!w || !js_equal(v, w)) return 0;
        }
        return 1;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(a);
        if (n != json_array_size(b)) return 0;
        for (size_t i = 0; i < n; i++)
            if (!js_equal(json_array_get(a, i), json_array_get(b, i))) return 0;
        return 1;
    }
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
    default: return 1; /* true, false, null */
    }
}

static int js_type_ok(const json_t *v, int t) {
    switch (t) {
    case T_STRING: return json_is_string(v);
    case T_NUMBER: return json_is_number(v);
    case T_INTEGER: return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    case T_BOOLEAN: return json_is_boolean(v);
    case T_ARRAY: return json_is_array(v);
    case T_OBJECT: return json_is_object(v);
    case T_NULL: return json_is_null(v);
    default: return 1;
    }
}

static json_t *parse_text(const char *t, size_t n) {
    json_t *v = json_loadb(t, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v) return v;
    /* the first fenced block: ``` [lang] [spaces] \n content ``` */
    for (const char *p = t; (p = memmem(p, n - (size_t)(p - t), "```", 3)); p++) {
        const char *q = p + 3, *end = t + n;
        while (q < end && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '_' ||
                           *q == '-'))
            q++;
        while (q < end && (*q == ' ' || *q == '\t')) q++;
        if (q >= end || *q != '\n') continue;
        q++;
        const char *c = memmem(q, (size_t)(end - q), "```", 3);
        if (!c) continue;
        return json_loadb(q, (size_t)(c - q), JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    }
    return NULL;
}

static int js_grade(void *p, const rft_sample *sample, const rft_item *item, double *score, char *err, size_t cap) {
    js_state *s = p;
    gb_ctx c;
    gb_buf a = {0}, b = {0};
    json_t *val = NULL, *ref = NULL, *row = NULL;
    int rc = RFT_ERROR, own_ref = 1;
    gb_ctx_init(&c, s->host, sample, item);
    if (gb_tmpl_expand(&s->input, &c, &a, G, err, cap)) goto out;
    /* the reference first: its errors are the config's, whatever the sample */
    if (s->ref_kind == 1) { ref = s->ref_literal; own_ref = 0; } /* shared, read-only: no refcount traffic across threads */
    else if (s->ref_kind == 2) {
        size_t n = 0;
        const char *rj = item && s->host && s->host->item_json ? s->host->item_json(item, &n) : NULL;
        row = rj ? json_loadb(rj, n, JSON_ALLOW_NUL, NULL) : NULL;
        json_t *v = row ? gb_json_path(row, s->ref_path) : NULL;
        if (!v) { gb_err(err, cap, G ": the item has no field '%s'", s->ref_path); goto out; }
        ref = json_incref(v);
    } else if (s->ref_kind == 3) {
        if (gb_tmpl_expand(&s->reference, &c, &b, G, err, cap)) goto out;
        ref = json_loadb(b.p, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!ref) { gb_err(err, cap, G ": the reference '%.80s' is not JSON", b.p); goto out; }
    }
    for (size_t i = 0; i < s->n_fields; i++)
        if (!gb_json_path(ref, s->fields[i])) {
            gb_err(err, cap, G ": the reference has no field '%s'", s->fields[i]);
            goto out;
        }
    rc = RFT_OK;
    *score = 0;
    val = parse_text(a.p, a.len);
    if (!val) goto out;
    for (size_t i = 0; i < s->n_req; i++) {
        json_t *v = gb_json_path(val, s->req_path[i]);
        if (!v || !js_type_ok(v, s->req_type[i])) goto out;
    }
    if (s->n_fields) {
        size_t eq = 0;
        for (size_t i = 0; i < s->n_fields; i++) {
            json_t *v = gb_json_path(val, s->fields[i]);
            eq += v && js_equal(v, gb_json_path(ref, s->fields[i]));
        }
        *score = s->all ? (eq == s->n_fields) : (double)eq / (double)s->n_fields;
    } else if (ref) *score = js_equal(val, ref);
    else *score = 1;
out:
    if (val) json_decref(val);
    if (ref && own_ref) json_decref(ref);
    if (row) json_decref(row);
    gb_buf_free(&a);
    gb_buf_free(&b);
    gb_ctx_free(&c);
    return rc;
}

static const rft_grader js_grader = {
    .abi_version = RFT_GRADER_ABI_VERSION,
    .name = G,
    .flags = RFT_GRADER_THREADSAFE,
    .create = js_create,
    .grade = js_grade,
    .destroy = js_destroy,
};

RFT_GRADER_EXPORT const rft_grader *rft_grader_v1(void) { return &js_grader; }
