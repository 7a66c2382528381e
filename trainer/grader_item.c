/* trainer/grader_item.c: rft_item (a JSON row behind dotted paths, with a
 * per-call arena) and the rft_host functions plugins call: item_get,
 * item_json, log. */
#define _GNU_SOURCE
#include "grader_item.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena: blocks are never moved, so earlier strings stay valid ---- */
typedef struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    char data[];
} arena_block;

static char *arena_alloc(rft_item *item, size_t n) {
    arena_block *b = (arena_block *)item->arena;
    if (!b || b->cap - b->used < n) {
        size_t cap = b ? b->cap * 2 : 4096;
        if (cap < n) cap = n;
        arena_block *nb = malloc(sizeof *nb + cap);
        if (!nb) return NULL;
        nb->next = b, nb->cap = cap, nb->used = 0;
        item->arena = (char *)nb;
        b = nb;
    }
    char *p = b->data + b->used;
    b->used += (n + 15) & ~(size_t)15;
    if (b->used > b->cap) b->used = b->cap;
    return p;
}

void grader_item_init(rft_item *item, const json_t *row) {
    memset(item, 0, sizeof *item);
    item->row = row;
}

void grader_item_reset(rft_item *item) {
    arena_block *b = (arena_block *)item->arena;
    if (b) {
        /* keep the newest (largest) block, free the rest */
        arena_block *old = b->next;
        while (old) {
            arena_block *n = old->next;
            free(old);
            old = n;
        }
        b->next = NULL, b->used = 0;
    }
    item->json = NULL, item->json_len = 0;
}

void grader_item_set(rft_item *item, const json_t *row) {
    item->row = row;
    grader_item_reset(item);
}

void grader_item_free(rft_item *item) {
    grader_item_reset(item);
    free(item->arena);
    memset(item, 0, sizeof *item);
}

/* ---- paths ---- */
const json_t *grader_json_path(const json_t *root, const char *path) {
    const json_t *v = root;
    const char *p = path;
    if (!v || !p) return NULL;
    while (*p) {
        if (*p == '[') {
            char *end;
            long long i = strtoll(p + 1, &end, 10);
            if (end == p + 1 || *end != ']' || !json_is_array(v)) return NULL;
            if (i < 0) i += (long long)json_array_size(v);
            if (i < 0 || (size_t)i >= json_array_size(v)) return NULL;
            v = json_array_get(v, (size_t)i);
            p = end + 1;
            if (*p == '.') p++;
            continue;
        }
        size_t n = strcspn(p, ".[");
        if (n == 0) return NULL;
        if (json_is_object(v)) {
            v = json_object_getn(v, p, n);
        } else if (json_is_array(v)) {
            /* "nums.2" */
            char *end;
            long long i = strtoll(p, &end, 10);
            if (end != p + n) return NULL;
            if (i < 0 || (size_t)i >= json_array_size(v)) return NULL;
            v = json_array_get(v, (size_t)i);
        } else {
            return NULL;
        }
        if (!v) return NULL;
        p += n;
        if (*p == '.') {
            p++;
            if (!*p) return NULL;
        }
    }
    return v;
}

/* ---- compact JSON with shortest round-trip reals ---- */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                esc = tmp;
            }
        }
        if (esc) {
            sb_put(b, s + i - run, run);
            run = 0;
            sb_put(b, esc, strlen(esc));
        } else {
            run++;
        }
    }
    sb_put(b, s + n - run, run);
    sb_put(b, "\"", 1);
}

static void sb_real(sbuf *b, double x) {
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, x);
        if (strtod(tmp, NULL) == x) break;
    }
    if (!strpbrk(tmp, ".eEin")) strcat(tmp, ".0");
    sb_put(b, tmp, strlen(tmp));
}

static void sb_json(sbuf *b, const json_t *v) {
    char tmp[32];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        sb_put(b, "{", 1);
        json_object_foreach((json_t *)v, k, x) {
            if (!first) sb_put(b, ",", 1);
            first = 0;
            sb_str(b, k, strlen(k));
            sb_put(b, ":", 1);
            sb_json(b, x);
        }
        sb_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        sb_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_put(b, ",", 1);
            sb_json(b, json_array_get(v, i));
        }
        sb_put(b, "]", 1);
        break;
    case JSON_STRING: sb_str(b, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        sb_put(b, tmp, strlen(tmp));
        break;
    case JSON_REAL: sb_real(b, json_real_value(v)); break;
    case JSON_TRUE: sb_put(b, "true", 4); break;
    case JSON_FALSE: sb_put(b, "false", 5); break;
    case JSON_NULL: sb_put(b, "null", 4); break;
    }
}

char *grader_json_compact(const json_t *v, size_t *len) {
    sbuf b = {0};
    sb_json(&b, v);
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    if (len) *len = b.n;
    return b.p;
}

/* ---- rft_host functions ---- */
static const char *host_item_get(const rft_item *citem, const char *path, size_t *len) {
    rft_item *item = (rft_item *)citem;
    if (!item || !path) return NULL;
    const json_t *v = grader_json_path(item->row, path);
    if (!v) return NULL;
    if (json_is_string(v)) { /* owned by the row, which outlives grade() */
        if (len) *len = json_string_length(v);
        return json_string_value(v);
    }
    size_t n;
    char *s = grader_json_compact(v, &n);
    if (!s) return NULL;
    char *p = arena_alloc(item, n + 1);
    if (p) memcpy(p, s, n + 1);
    free(s);
    if (p && len) *len = n;
    return p;
}

static const char *host_item_json(const rft_item *citem, size_t *len) {
    rft_item *item = (rft_item *)citem;
    if (!item || !item->row) return NULL;
    if (!item->json) {
        size_t n;
        char *s = grader_json_compact(item->row, &n);
        if (!s) return NULL;
        char *p = arena_alloc(item, n + 1);
        if (p) memcpy(p, s, n + 1);
        free(s);
        if (!p) return NULL;
        item->json = p, item->json_len = n;
    }
    if (len) *len = item->json_len;
    return item->json;
}

static void host_log(const rft_host *host, int level, const char *msg) {
    const grader_host *h = (const grader_host *)host;
    static const char *names[] = {"debug", "info", "warning", "error"};
    if (level < RFT_LOG_INFO && !getenv("RFT_GRADER_DEBUG")) return;
    if (level < 0) level = 0;
    if (level > 3) level = 3;
    fprintf(stderr, "rft: grader '%s': %s: %s\n", h ? h->name : "?", names[level], msg ? msg : "");
}

void grader_host_init(grader_host *h, const char *name) {
    memset(h, 0, sizeof *h);
    h->host.abi_version = RFT_GRADER_ABI_VERSION;
    h->host.item_get = host_item_get;
    h->host.item_json = host_item_json;
    h->host.log = host_log;
    snprintf(h->name, sizeof h->name, "%s", name ? name : "");
}
