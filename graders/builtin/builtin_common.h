/* builtin_common.h: helpers shared by the built-in graders, as static inline
 * code so that every grader stays one plugin built from rft_grader.h alone
 * (plus libc, libm, PCRE2, jansson).
 *
 * Holds: error formatting; a growable byte buffer; UTF-8 decoding (invalid
 * bytes become U+FFFD, one per maximal invalid subpart, like Python's
 * bytes.decode("utf-8", "replace")); Python's str.isspace() and str.lower()
 * on code points; JSON paths ("a.b[2].c"); config validation; templates
 * ("{{item.path}}", "{{sample.output_text}}", "{{sample.output_json.path}}");
 * a sequence interner (token and n-gram ids) and a bit-parallel LCS.
 *
 * Templates (every grader's `input`, `reference`, ...):
 *   literal text with any number of {{ ... }} parts (spaces inside the braces
 *   are allowed):
 *   {{item}}                    the whole dataset row as compact JSON
 *   {{item.PATH}}               a field of the row (host item_get): strings
 *                               unquoted, other values as compact JSON. An
 *                               absent field is a grader error (the dataset
 *                               does not fit the config).
 *   {{sample.output_text}}      the completion text
 *   {{sample.output_json}}      the completion parsed as JSON, compact
 *   {{sample.output_json.PATH}} a field of the completion parsed as JSON.
 *                               When the completion is not JSON or lacks the
 *                               field, this expands to the empty string (the
 *                               sample's fault, so it scores as a mismatch,
 *                               not an error).
 *   PATH: dotted keys with [index] for arrays: "meta.target", "nums[2]".
 *   Anything else inside {{ }} is rejected by create(). A template key given
 *   a number or boolean (YAML `reference: 42`) uses its JSON text ("42").
 */
#ifndef RFT_BUILTIN_COMMON_H
#define RFT_BUILTIN_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rft_grader.h"
#include "unicode_lower.h"

/* ---------------------------------------------------------------- errors */

static inline int gb_err(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int gb_err(char *err, size_t cap, const char *fmt, ...) {
    if (err && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return RFT_ERROR;
}

/* ---------------------------------------------------------------- buffer */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} gb_buf;

static inline void gb_buf_put(gb_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}
static inline void gb_buf_reset(gb_buf *b) { b->len = 0; if (b->p) b->p[0] = 0; b->oom = 0; }
static inline void gb_buf_free(gb_buf *b) { free(b->p); b->p = NULL; b->len = b->cap = 0; }
/* the text, "" when nothing was written */
static inline const char *gb_buf_str(const gb_buf *b) { return b->p ? b->p : ""; }

/* ---------------------------------------------------------------- UTF-8 */

/* Decodes s[0..n) into a malloc'd array of code points (*out, *nout).
   Invalid sequences become U+FFFD, one per maximal subpart (Python's
   "replace"). Returns 0, or -1 when out of memory. */
static inline int gb_utf8_decode(const char *s, size_t n, uint32_t **out, size_t *nout) {
    const unsigned char *u = (const unsigned char *)s;
    uint32_t *cp = malloc((n + 1) * sizeof *cp);
    if (!cp) return -1;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned c = u[i];
        if (c < 0x80) { cp[k++] = c; i++; continue; }
        int need;
        uint32_t v;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) { need = 1; v = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2; v = c & 0x0F;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3; v = c & 0x07;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else { cp[k++] = 0xFFFD; i++; continue; }
        size_t j = i + 1;
        int got = 0;
        while (got < need && j < n) {
            unsigned d = u[j];
            if (d < lo || d > hi) break;
            v = (v << 6) | (d & 0x3F);
            lo = 0x80; hi = 0xBF;
            j++; got++;
        }
        cp[k++] = got == need ? v : 0xFFFD;
        i = j;
    }
    *out = cp;
    *nout = k;
    return 0;
}

/* Appends the UTF-8 encoding of code point c. */
static inline void gb_utf8_put(gb_buf *b, uint32_t c) {
    char t[4];
    size_t n;
    if (c < 0x80) { t[0] = (char)c; n = 1; }
    else if (c < 0x800) { t[0] = (char)(0xC0 | (c >> 6)); t[1] = (char)(0x80 | (c & 0x3F)); n = 2; }
    else if (c < 0x10000) {
        t[0] = (char)(0xE0 | (c >> 12)); t[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        t[2] = (char)(0x80 | (c & 0x3F)); n = 3;
    } else {
        t[0] = (char)(0xF0 | (c >> 18)); t[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        t[2] = (char)(0x80 | ((c >> 6) & 0x3F)); t[3] = (char)(0x80 | (c & 0x3F)); n = 4;
    }
    gb_buf_put(b, t, n);
}

/* Python str.isspace() (the separators of str.split() and str.strip()). */
static inline int gb_isspace(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    if (c < 0x85) return 0;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Python str.lower() of one code point, out of context, into out[0..2);
   returns the count (2 only for U+0130). U+03A3 lowers to U+03C3 here;
   gb_lower_all applies the final-sigma rule. */
static inline int gb_lower(uint32_t c, uint32_t out[2]) {
    if (c < 0x80) { out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c; return 1; }
    if (c == 0x130) { out[0] = 0x69; out[1] = 0x307; return 2; }
    size_t lo = 0, hi = sizeof gb_lower_table / sizeof gb_lower_table[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (gb_lower_table[mid][0] < c) lo = mid + 1;
        else hi = mid;
    }
    out[0] = (lo < sizeof gb_lower_table / sizeof gb_lower_table[0] && gb_lower_table[lo][0] == c)
                 ? gb_lower_table[lo][1] : c;
    return 1;
}

static inline int gb_in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r[mid][1] < c) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && r[lo][0] <= c;
}
#define GB_IGNORABLE(c) gb_in_ranges(gb_case_ignorable, sizeof gb_case_ignorable / sizeof gb_case_ignorable[0], (c))
#define GB_CASED(c) gb_in_ranges(gb_cased, sizeof gb_cased / sizeof gb_cased[0], (c))

/* Python's final sigma: s[i] == U+03A3 lowers to U+03C2 when a cased letter
   comes before it and none after it (case-ignorable characters skipped). */
static inline int gb_final_sigma(const uint32_t *s, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && GB_IGNORABLE(s[j - 1])) j--;
    if (j == 0 || !GB_CASED(s[j - 1])) return 0;
    j = i + 1;
    while (j < n && GB_IGNORABLE(s[j])) j++;
    return j == n || !GB_CASED(s[j]);
}

/* str.lower() of a code point array into a new malloc'd array. */
static inline uint32_t *gb_lower_all(const uint32_t *s, size_t n, size_t *nout) {
    uint32_t *o = malloc((2 * n + 1) * sizeof *o);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0x3A3) o[k++] = gb_final_sigma(s, n, i) ? 0x3C2 : 0x3C3;
        else k += (size_t)gb_lower(s[i], o + k);
    }
    *nout = k;
    return o;
}

/* ---------------------------------------------------------------- JSON paths */

/* Follows "a.b[2].c" from root; NULL when absent or malformed. */
static inline json_t *gb_json_path(json_t *root, const char *path) {
    json_t *v = root;
    const char *p = path;
    char key[512];
    while (v && *p) {
        if (*p == '[') {
            char *end;
            long idx = strtol(p + 1, &end, 10);
            if (end == p + 1 || *end != ']' || !json_is_array(v) || idx < 0) return NULL;
            v = json_array_get(v, (size_t)idx);
            p = end + 1;
            if (*p == '.') p++;
            continue;
        }
        size_t n = strcspn(p, ".[");
        if (n == 0 || n >= sizeof key || !json_is_object(v)) return NULL;
        memcpy(key, p, n);
        key[n] = 0;
        v = json_object_get(v, key);
        p += n;
        if (*p == '.') p++;
    }
    return v;
}

/* Appends v as a host item_get would: strings unquoted, the rest compact JSON. */
static inline void gb_json_render(gb_buf *b, const json_t *v) {
    if (json_is_string(v)) { gb_buf_put(b, json_string_value(v), json_string_length(v)); return; }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) { b->oom = 1; return; }
    gb_buf_put(b, s, strlen(s));
    free(s);
}

/* ---------------------------------------------------------------- config */

/* Parses config_json into an object; an error message otherwise. */
static inline json_t *gb_cfg_parse(const char *config_json, const char *grader, char *err, size_t cap) {
    json_error_t je;
    json_t *c = json_loads(config_json ? config_json : "{}", JSON_DECODE_ANY, &je);
    if (!c) { gb_err(err, cap, "%s: config is not JSON: %s", grader, je.text); return NULL; }
    if (!json_is_object(c)) {
        json_decref(c);
        gb_err(err, cap, "%s: config must be a mapping", grader);
        return NULL;
    }
    return c;
}

/* Rejects keys not in allowed (NULL-terminated). */
static inline int gb_cfg_keys(json_t *cfg, const char *grader, const char *const *allowed, char *err, size_t cap) {
    const char *key;
    json_t *v;
    json_object_foreach(cfg, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (!strcmp(*a, key)) { ok = 1; break; }
        if (!ok) {
            char list[512] = "";
            for (const char *const *a = allowed; *a; a++) {
                if (a != allowed) strncat(list, ", ", sizeof list - strlen(list) - 1);
                strncat(list, *a, sizeof list - strlen(list) - 1);
            }
            return gb_err(err, cap, "%s: unknown key '%s' (known: %s)", grader, key, list);
        }
    }
    return RFT_OK;
}

/* String field: *out = value, or def when absent (required: absent = error).
   A number or boolean is taken as its JSON text (42 -> "42", true -> "true").
   *out stays valid while cfg lives. */
static inline int gb_cfg_str(json_t *cfg, const char *grader, const char *key, int required, const char *def,
                             const char **out, char *err, size_t cap) {
    json_t *v = json_object_get(cfg, key);
    if (!v) {
        if (required) return gb_err(err, cap, "%s: missing required key '%s'", grader, key);
        *out = def;
        return RFT_OK;
    }
    if (json_is_number(v) || json_is_boolean(v)) {
        /* YAML `reference: 42` arrives as a number: use its text, "42" */
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!t || json_object_set_new(cfg, key, json_string(t))) { free(t); return gb_err(err, cap, "%s: out of memory", grader); }
        free(t);
        v = json_object_get(cfg, key);
    }
    if (!json_is_string(v)) return gb_err(err, cap, "%s: key '%s' must be a string", grader, key);
    *out = json_string_value(v);
    return RFT_OK;
}

static inline int gb_cfg_num(json_t *cfg, const char *grader, const char *key, double def, double *out, char *err,
                             size_t cap) {
    json_t *v = json_object_get(cfg, key);
    if (!v) { *out = def; return RFT_OK; }
    if (!json_is_number(v)) return gb_err(err, cap, "%s: key '%s' must be a number", grader, key);
    *out = json_number_value(v);
    if (!isfinite(*out)) return gb_err(err, cap, "%s: key '%s' must be finite", grader, key);
    return RFT_OK;
}

static inline int gb_cfg_bool(json_t *cfg, const char *grader, const char *key, int def, int *out, char *err,
                              size_t cap) {
    json_t *v = json_object_get(cfg, key);
    if (!v) { *out = def; return RFT_OK; }
    if (!json_is_boolean(v)) return gb_err(err, cap, "%s: key '%s' must be true or false", grader, key);
    *out = json_is_true(v);
    return RFT_OK;
}

/* ---------------------------------------------------------------- templates */

enum { GB_LIT, GB_ITEM, GB_ITEM_ALL, GB_OUT_TEXT, GB_OUT_JSON };

typedef struct {
    int kind;
    char *text; /* GB_LIT: the literal; GB_ITEM / GB_OUT_JSON: the path ("" = whole) */
    size_t len;
} gb_part;

typedef struct {
    gb_part *parts;
    size_t n;
    int uses_json; /* some part needs the sample parsed as JSON */
} gb_tmpl;

static inline void gb_tmpl_free(gb_tmpl *t) {
    for (size_t i = 0; i < t->n; i++) free(t->parts[i].text);
    free(t->parts);
    t->parts = NULL;
    t->n = 0;
}

static inline int gb_tmpl_add(gb_tmpl *t, int kind, const char *s, size_t n) {
    gb_part *p = realloc(t->parts, (t->n + 1) * sizeof *p);
    if (!p) return -1;
    t->parts = p;
    char *c = malloc(n + 1);
    if (!c) return -1;
    memcpy(c, s, n);
    c[n] = 0;
    t->parts[t->n].kind = kind;
    t->parts[t->n].text = c;
    t->parts[t->n].len = n;
    t->n++;
    return 0;
}

static inline int gb_path_ok(const char *p) {
    if (!*p) return 0;
    for (; *p; p++)
        if (!(*p == '_' || *p == '-' || *p == '.' || *p == '[' || *p == ']' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (unsigned char)*p >= 0x80))
            return 0;
    return 1;
}

/* Parses src into t. key names the config key for messages. */
static inline int gb_tmpl_parse(gb_tmpl *t, const char *src, const char *grader, const char *key, char *err,
                                size_t cap) {
    memset(t, 0, sizeof *t);
    const char *p = src;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) { if (gb_tmpl_add(t, GB_LIT, p, strlen(p))) goto oom; break; }
        if (open > p && gb_tmpl_add(t, GB_LIT, p, (size_t)(open - p))) goto oom;
        const char *close = strstr(open + 2, "}}");
        if (!close) { gb_tmpl_free(t); return gb_err(err, cap, "%s: key '%s': '{{' without '}}'", grader, key); }
        const char *a = open + 2, *b = close;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        char name[1024];
        size_t n = (size_t)(b - a);
        if (n >= sizeof name) {
            gb_tmpl_free(t);
            return gb_err(err, cap, "%s: key '%s': template path longer than %zu bytes", grader, key, sizeof name - 1);
        }
        memcpy(name, a, n);
        name[n] = 0;
        int rc = 0;
        if (!strcmp(name, "item")) rc = gb_tmpl_add(t, GB_ITEM_ALL, "", 0);
        else if (!strncmp(name, "item.", 5) && gb_path_ok(name + 5)) rc = gb_tmpl_add(t, GB_ITEM, name + 5, n - 5);
        else if (!strcmp(name, "sample.output_text")) rc = gb_tmpl_add(t, GB_OUT_TEXT, "", 0);
        else if (!strcmp(name, "sample.output_json")) { rc = gb_tmpl_add(t, GB_OUT_JSON, "", 0); t->uses_json = 1; }
        else if (!strncmp(name, "sample.output_json.", 19) && gb_path_ok(name + 19)) {
            rc = gb_tmpl_add(t, GB_OUT_JSON, name + 19, n - 19);
            t->uses_json = 1;
        } else {
            gb_tmpl_free(t);
            return gb_err(err, cap,
                          "%s: key '%s': unknown template '{{%s}}' (use item.PATH, item, sample.output_text, "
                          "sample.output_json[.PATH])",
                          grader, key, name);
        }
        if (rc) goto oom;
        p = close + 2;
    }
    return RFT_OK;
oom:
    gb_tmpl_free(t);
    return gb_err(err, cap, "%s: out of memory", grader);
}

/* Everything a template may read during one grade() call. */
typedef struct {
    const rft_host *host;
    const rft_sample *sample;
    const rft_item *item;
    json_t *out_json; /* the sample parsed as JSON, on first use */
    int json_tried;
} gb_ctx;

static inline void gb_ctx_init(gb_ctx *c, const rft_host *h, const rft_sample *s, const rft_item *it) {
    c->host = h; c->sample = s; c->item = it; c->out_json = NULL; c->json_tried = 0;
}
static inline void gb_ctx_free(gb_ctx *c) { if (c->out_json) json_decref(c->out_json); c->out_json = NULL; }

/* The sample parsed as JSON (NULL when it is not JSON). */
static inline json_t *gb_ctx_json(gb_ctx *c) {
    if (!c->json_tried) {
        c->json_tried = 1;
        const char *s = c->sample && c->sample->output_text ? c->sample->output_text : "";
        size_t n = c->sample && c->sample->output_text ? c->sample->output_len : 0;
        c->out_json = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    }
    return c->out_json;
}

/* Expands t into out (reset first). */
static inline int gb_tmpl_expand(const gb_tmpl *t, gb_ctx *c, gb_buf *out, const char *grader, char *err,
                                 size_t cap) {
    gb_buf_reset(out);
    gb_buf_put(out, "", 0);
    for (size_t i = 0; i < t->n; i++) {
        const gb_part *p = &t->parts[i];
        switch (p->kind) {
        case GB_LIT: gb_buf_put(out, p->text, p->len); break;
        case GB_OUT_TEXT:
            if (c->sample && c->sample->output_text) gb_buf_put(out, c->sample->output_text, c->sample->output_len);
            break;
        case GB_ITEM:
        case GB_ITEM_ALL: {
            size_t n = 0;
            const char *v = NULL;
            if (c->item && c->host) {
                if (p->kind == GB_ITEM) { if (c->host->item_get) v = c->host->item_get(c->item, p->text, &n); }
                else if (c->host->item_json) v = c->host->item_json(c->item, &n);
            }
            if (!v) return gb_err(err, cap, "%s: the item has no field '%s'", grader, p->text);
            gb_buf_put(out, v, n);
            break;
        }
        case GB_OUT_JSON: {
            json_t *j = gb_ctx_json(c);
            if (j && p->len) j = gb_json_path(j, p->text);
            if (j) gb_json_render(out, j);
            break;
        }
        }
    }
    if (out->oom) return gb_err(err, cap, "%s: out of memory", grader);
    return RFT_OK;
}

/* ---------------------------------------------------------------- interner */

/* Gives each distinct sequence of uint32 (a token's code points, an n-gram's
   token ids) a dense id 0, 1, 2... Keys point into caller memory that must
   outlive the interner. */
typedef struct {
    const uint32_t **key;
    uint32_t *klen;
    uint32_t *slot; /* open addressing: id + 1, 0 = empty */
    size_t cap, n;  /* cap: slots (power of two); n: ids */
} gb_intern;

static inline uint64_t gb_hash(const uint32_t *s, size_t n) {
    uint64_t h = 1469598103934665603ull ^ n;
    for (size_t i = 0; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; h ^= h >> 29; }
    return h;
}

/* max_ids: an upper bound on the number of distinct keys. */
static inline int gb_intern_init(gb_intern *t, size_t max_ids) {
    t->cap = 16;
    while (t->cap < 2 * max_ids + 2) t->cap *= 2;
    t->n = 0;
    t->slot = calloc(t->cap, sizeof *t->slot);
    t->key = malloc((max_ids + 1) * sizeof *t->key);
    t->klen = malloc((max_ids + 1) * sizeof *t->klen);
    if (!t->slot || !t->key || !t->klen) { free(t->slot); free(t->key); free(t->klen); return -1; }
    return 0;
}
static inline void gb_intern_free(gb_intern *t) { free(t->slot); free(t->key); free(t->klen); }

/* id of s[0..n); adds it when absent if add, else returns UINT32_MAX. */
static inline uint32_t gb_intern_id(gb_intern *t, const uint32_t *s, size_t n, int add) {
    size_t m = t->cap - 1, h = (size_t)gb_hash(s, n) & m;
    for (;;) {
        uint32_t e = t->slot[h];
        if (!e) break;
        uint32_t id = e - 1;
        if (t->klen[id] == n && !memcmp(t->key[id], s, n * sizeof *s)) return id;
        h = (h + 1) & m;
    }
    if (!add) return UINT32_MAX;
    uint32_t id = (uint32_t)t->n++;
    t->key[id] = s;
    t->klen[id] = (uint32_t)n;
    t->slot[h] = id + 1;
    return id;
}

/* ---------------------------------------------------------------- LCS */

/* Length of the longest common subsequence of a[0..n) and b[0..m), by the
   bit-parallel algorithm of Hyyrö (as in rapidfuzz): O(ceil(n/64) * m) time
   and O(n) memory. Symbols that occur often in a get a dense bit vector;
   rare ones are set from position lists. Returns -1 when out of memory. */
static inline long gb_lcs(const uint32_t *a, size_t n, const uint32_t *b, size_t m) {
    if (n == 0 || m == 0) return 0;
    size_t W = (n + 63) / 64;
    gb_intern t;
    if (gb_intern_init(&t, n)) return -1;
    uint32_t *ida = malloc(n * sizeof *ida);
    uint64_t *S = malloc(W * sizeof *S), *X = calloc(W, sizeof *X);
    size_t *cnt = NULL, *start = NULL, *pos = NULL;
    uint64_t *dense = NULL;
    int32_t *dense_of = NULL;
    long result = -1;
    if (!ida || !S || !X) goto done;
    for (size_t i = 0; i < n; i++) ida[i] = gb_intern_id(&t, a + i, 1, 1);
    size_t D = t.n;
    cnt = calloc(D + 1, sizeof *cnt);
    start = malloc((D + 1) * sizeof *start);
    pos = malloc(n * sizeof *pos);
    dense_of = malloc(D * sizeof *dense_of);
    if (!cnt || !start || !pos || !dense_of) goto done;
    for (size_t i = 0; i < n; i++) cnt[ida[i]]++;
    start[0] = 0;
    for (size_t d = 0; d < D; d++) start[d + 1] = start[d] + cnt[d];
    for (size_t d = 0; d < D; d++) cnt[d] = start[d];
    for (size_t i = 0; i < n; i++) pos[cnt[ida[i]]++] = i;
    size_t nd = 0;
    for (size_t d = 0; d < D; d++) dense_of[d] = (start[d + 1] - start[d] >= W && W > 1) ? (int32_t)nd++ : -1;
    if (W == 1) for (size_t d = 0; d < D; d++) dense_of[d] = (int32_t)nd++;
    dense = calloc(nd * W + 1, sizeof *dense);
    if (!dense) goto done;
    for (size_t d = 0; d < D; d++)
        if (dense_of[d] >= 0)
            for (size_t k = start[d]; k < start[d + 1]; k++)
                dense[(size_t)dense_of[d] * W + pos[k] / 64] |= 1ull << (pos[k] % 64);
    for (size_t w = 0; w < W; w++) S[w] = ~0ull;
    for (size_t j = 0; j < m; j++) {
        uint32_t d = gb_intern_id(&t, b + j, 1, 0);
        const uint64_t *M;
        if (d == UINT32_MAX) continue; /* matches nothing: S unchanged */
        if (dense_of[d] >= 0) M = dense + (size_t)dense_of[d] * W;
        else {
            for (size_t k = start[d]; k < start[d + 1]; k++) X[pos[k] / 64] |= 1ull << (pos[k] % 64);
            M = X;
        }
        uint64_t carry = 0;
        for (size_t w = 0; w < W; w++) {
            uint64_t u = S[w] & M[w];
            uint64_t sum = S[w] + u;
            uint64_t c1 = sum < S[w];
            uint64_t sum2 = sum + carry;
            uint64_t c2 = sum2 < sum;
            S[w] = sum2 | (S[w] - u);
            carry = c1 | c2;
        }
        if (M == X)
            for (size_t k = start[d]; k < start[d + 1]; k++) X[pos[k] / 64] = 0;
    }
    long ones = 0;
    for (size_t w = 0; w < W; w++) {
        uint64_t v = ~S[w];
        if (w == W - 1 && n % 64) v &= (1ull << (n % 64)) - 1;
        ones += __builtin_popcountll(v);
    }
    result = ones;
done:
    gb_intern_free(&t);
    free(ida); free(S); free(X); free(cnt); free(start); free(pos); free(dense); free(dense_of);
    return result;
}

#endif
