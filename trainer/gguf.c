/* trainer/gguf.c: GGUF v2/v3 reader and writer (see gguf.h). The reader
 * checks every count, length, dimension and offset against the bytes that
 * are actually there before allocating or reading, so a truncated or hostile
 * file gives one error naming the file and the key or tensor at fault. */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "util.h"

#define GGUF_MAGIC "GGUF"

/* ---- string arena: all keys, names and string values of one file ---- */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    char data[];
} arena_chunk;

/* the arena head is stashed in front of the kv array allocation */
typedef struct gguf_priv {
    arena_chunk *chunks;
} gguf_priv;

static char *arena_str(arena_chunk **head, const uint8_t *s, uint64_t len) {
    arena_chunk *c = *head;
    if (!c || c->cap - c->used < len + 1) {
        size_t cap = len + 1 > (1u << 20) ? (size_t)len + 1 : (1u << 20);
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = *head;
        c->used = 0;
        c->cap = cap;
        *head = c;
    }
    char *p = c->data + c->used;
    memcpy(p, s, len);
    p[len] = 0;
    c->used += len + 1;
    return p;
}

static void arena_free(arena_chunk *c) {
    while (c) {
        arena_chunk *n = c->next;
        free(c);
        c = n;
    }
}

/* ---- reader ---- */

typedef struct cursor {
    const uint8_t *p;
    size_t size, pos;
} cursor;

static int rd(cursor *c, void *dst, size_t n) {
    if (c->size - c->pos < n) return -1;
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

size_t gguf_type_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(uint32_t type) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
    return type < GGUF_TYPE_COUNT ? names[type] : "?";
}

/* reads one little-endian scalar of a numeric type into kv->v */
static void scalar_decode(uint32_t type, const uint8_t *p, gguf_kv *kv) {
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
    switch (type) {
    case GGUF_TYPE_UINT8: memcpy(&u8, p, 1); kv->v.u = u8; break;
    case GGUF_TYPE_BOOL: memcpy(&u8, p, 1); kv->v.u = u8 != 0; break;
    case GGUF_TYPE_INT8: memcpy(&i8, p, 1); kv->v.i = i8; break;
    case GGUF_TYPE_UINT16: memcpy(&u16, p, 2); kv->v.u = u16; break;
    case GGUF_TYPE_INT16: memcpy(&i16, p, 2); kv->v.i = i16; break;
    case GGUF_TYPE_UINT32: memcpy(&u32, p, 4); kv->v.u = u32; break;
    case GGUF_TYPE_INT32: memcpy(&i32, p, 4); kv->v.i = i32; break;
    case GGUF_TYPE_FLOAT32: memcpy(&f32, p, 4); kv->v.f = f32; break;
    case GGUF_TYPE_UINT64: memcpy(&kv->v.u, p, 8); break;
    case GGUF_TYPE_INT64: memcpy(&kv->v.i, p, 8); break;
    case GGUF_TYPE_FLOAT64: memcpy(&kv->v.f, p, 8); break;
    }
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i) {
    gguf_kv tmp = {0};
    size_t es = gguf_type_size(kv->arr_type);
    scalar_decode(kv->arr_type, kv->arr + i * es, &tmp);
    switch (kv->arr_type) {
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: return tmp.v.f;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: return (double)tmp.v.i;
    default: return (double)tmp.v.u;
    }
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i) {
    gguf_kv tmp = {0};
    size_t es = gguf_type_size(kv->arr_type);
    scalar_decode(kv->arr_type, kv->arr + i * es, &tmp);
    switch (kv->arr_type) {
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: return (int64_t)tmp.v.f;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: return tmp.v.i;
    default: return (int64_t)tmp.v.u;
    }
}

/* a GGUF string: u64 length then bytes; the length must fit in what is left */
static int rd_str(cursor *c, arena_chunk **arena, char **out, uint64_t *len_out, const char *what, const char *path,
                  char *err, size_t cap) {
    uint64_t len;
    if (rd(c, &len, 8)) return errf(err, cap, "%s: truncated at offset %zu reading the length of %s", path, c->pos, what);
    if (len > c->size - c->pos)
        return errf(err, cap, "%s: %s has length %llu at offset %zu, past the end of the file (%zu bytes)", path, what,
                    (unsigned long long)len, c->pos, c->size);
    char *s = arena_str(arena, c->p + c->pos, len);
    if (!s) return errf(err, cap, "%s: out of memory reading %s", path, what);
    c->pos += len;
    *out = s;
    if (len_out) *len_out = len;
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp((*(const gguf_tensor *const *)a)->name, (*(const gguf_tensor *const *)b)->name);
}

static int parse_kv(gguf_file *f, cursor *c, arena_chunk **arena, gguf_kv *kv, uint64_t idx, char *err, size_t cap) {
    const char *path = f->path;
    char what[64];
    snprintf(what, sizeof what, "metadata key #%llu", (unsigned long long)idx);
    if (rd_str(c, arena, &kv->key, NULL, what, path, err, cap)) return -1;
    if (rd(c, &kv->type, 4)) return errf(err, cap, "%s: truncated in the type of metadata key '%s'", path, kv->key);
    if (kv->type >= GGUF_TYPE_COUNT)
        return errf(err, cap, "%s: metadata key '%s' has unknown value type %u", path, kv->key, kv->type);
    kv->n = 1;
    if (kv->type == GGUF_TYPE_STRING) {
        snprintf(what, sizeof what, "the value of a metadata key");
        if (rd_str(c, arena, &kv->str, &kv->str_len, kv->key, path, err, cap)) return -1;
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        if (rd(c, &kv->arr_type, 4) || rd(c, &kv->n, 8))
            return errf(err, cap, "%s: truncated in the array header of metadata key '%s'", path, kv->key);
        size_t left = c->size - c->pos;
        if (kv->arr_type == GGUF_TYPE_STRING) {
            if (kv->n > left / 8)
                return errf(err, cap, "%s: metadata key '%s' claims %llu strings but only %zu bytes remain", path, kv->key,
                            (unsigned long long)kv->n, left);
            kv->strs = malloc(kv->n ? kv->n * sizeof(char *) : 1);
            kv->str_lens = malloc(kv->n ? kv->n * sizeof(uint64_t) : 1);
            if (!kv->strs || !kv->str_lens) return errf(err, cap, "%s: out of memory reading metadata key '%s'", path, kv->key);
            for (uint64_t i = 0; i < kv->n; i++) {
                uint64_t len;
                if (c->size - c->pos < 8 || (memcpy(&len, c->p + c->pos, 8), len > c->size - c->pos - 8))
                    return errf(err, cap, "%s: metadata key '%s': string %llu of %llu runs past the end of the file", path,
                                kv->key, (unsigned long long)i, (unsigned long long)kv->n);
                if (rd_str(c, arena, &kv->strs[i], &kv->str_lens[i], kv->key, path, err, cap)) return -1;
            }
        } else {
            size_t es = gguf_type_size(kv->arr_type);
            if (!es)
                return errf(err, cap, "%s: metadata key '%s' is an array of unsupported element type %u", path, kv->key,
                            kv->arr_type);
            if (kv->n > left / es)
                return errf(err, cap, "%s: metadata key '%s' claims %llu elements of %zu bytes but only %zu bytes remain",
                            path, kv->key, (unsigned long long)kv->n, es, left);
            kv->arr = c->p + c->pos;
            c->pos += kv->n * es;
        }
    } else {
        size_t es = gguf_type_size(kv->type);
        if (c->size - c->pos < es) return errf(err, cap, "%s: truncated in the value of metadata key '%s'", path, kv->key);
        scalar_decode(kv->type, c->p + c->pos, kv);
        c->pos += es;
    }
    return 0;
}

int gguf_parse(gguf_file *f, const void *buf, size_t size, const char *name, char *err, size_t cap) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", name);
    f->base = buf;
    f->size = size;
    const char *path = f->path;
    cursor c = {buf, size, 0};
    char magic[4];
    if (rd(&c, magic, 4) || memcmp(magic, GGUF_MAGIC, 4))
        return errf(err, cap, "%s: not a GGUF file (bad magic)", path);
    if (rd(&c, &f->version, 4)) return errf(err, cap, "%s: truncated GGUF header", path);
    if (f->version == 1) return errf(err, cap, "%s: GGUF version 1 is not supported (only 2 and 3)", path);
    if (f->version != 2 && f->version != 3) {
        if (f->version == 0x02000000u || f->version == 0x03000000u)
            return errf(err, cap, "%s: big-endian GGUF files are not supported", path);
        return errf(err, cap, "%s: unsupported GGUF version %u (only 2 and 3)", path, f->version);
    }
    if (rd(&c, &f->n_tensors, 8) || rd(&c, &f->n_kv, 8)) return errf(err, cap, "%s: truncated GGUF header", path);
    /* every key takes >= 13 bytes (8 length + 1 char... + 4 type), every tensor record >= 28 */
    size_t left = size - c.pos;
    if (f->n_kv > left / 12)
        return errf(err, cap, "%s: header claims %llu metadata keys, more than the file can hold", path,
                    (unsigned long long)f->n_kv);
    if (f->n_tensors > left / 24)
        return errf(err, cap, "%s: header claims %llu tensors, more than the file can hold", path,
                    (unsigned long long)f->n_tensors);

    gguf_priv *priv = calloc(1, sizeof(gguf_priv) + (f->n_kv + 1) * sizeof(gguf_kv));
    if (!priv) return errf(err, cap, "%s: out of memory", path);
    f->kv = (gguf_kv *)(priv + 1);
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        if (parse_kv(f, &c, &priv->chunks, &f->kv[i], i, err, cap)) {
            f->n_kv = i + 1;  /* free what was parsed */
            goto fail;
        }
        for (uint64_t j = 0; j < i; j++)
            if (!strcmp(f->kv[j].key, f->kv[i].key)) {
                errf(err, cap, "%s: duplicate metadata key '%s'", path, f->kv[i].key);
                f->n_kv = i + 1;
                goto fail;
            }
    }
    const gguf_kv *al = gguf_get(f, "general.alignment");
    if (al) {
        if (al->type != GGUF_TYPE_UINT32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)) || al->v.u > (1u << 20)) {
            errf(err, cap, "%s: general.alignment must be a u32 power of two (got type %s value %llu)", path,
                 gguf_type_name(al->type), (unsigned long long)al->v.u);
            goto fail;
        }
        f->alignment = al->v.u;
    }

    f->tensors = calloc(f->n_tensors + 1, sizeof(gguf_tensor));
    if (!f->tensors) {
        errf(err, cap, "%s: out of memory", path);
        goto fail;
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char what[64];
        snprintf(what, sizeof what, "tensor record #%llu", (unsigned long long)i);
        if (rd_str(&c, &priv->chunks, &t->name, NULL, what, path, err, cap)) goto fail;
        uint32_t nd;
        if (rd(&c, &nd, 4)) {
            errf(err, cap, "%s: truncated in tensor '%s'", path, t->name);
            goto fail;
        }
        if (nd < 1 || nd > GGUF_MAX_DIMS) {
            errf(err, cap, "%s: tensor '%s' has %u dimensions (1..%d allowed)", path, t->name, nd, GGUF_MAX_DIMS);
            goto fail;
        }
        t->n_dims = (int)nd;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        uint64_t n = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v;
            if (rd(&c, &v, 8)) {
                errf(err, cap, "%s: truncated in the dimensions of tensor '%s'", path, t->name);
                goto fail;
            }
            if (v > (uint64_t)INT64_MAX || (v && n > UINT64_MAX / v) || (v && n * v > (uint64_t)INT64_MAX)) {
                errf(err, cap, "%s: tensor '%s' has absurd dimension %llu", path, t->name, (unsigned long long)v);
                goto fail;
            }
            t->ne[d] = (int64_t)v;
            n *= v;
        }
        t->n_elems = n;
        uint32_t ty;
        if (rd(&c, &ty, 4) || rd(&c, &t->offset, 8)) {
            errf(err, cap, "%s: truncated in tensor '%s'", path, t->name);
            goto fail;
        }
        t->type = (int)ty;
        size_t be, bb;
        if (!ggml_type_block(t->type, &be, &bb)) {
            errf(err, cap, "%s: tensor '%s' has unknown ggml type %u", path, t->name, ty);
            goto fail;
        }
        if (t->ne[0] % (int64_t)be) {
            errf(err, cap, "%s: tensor '%s' (%s) has row length %lld, not a multiple of the block size %zu", path, t->name,
                 ggml_type_name(t->type), (long long)t->ne[0], be);
            goto fail;
        }
        if (ggml_row_bytes(t->type, n, &t->nbytes)) {
            errf(err, cap, "%s: tensor '%s' is too large", path, t->name);
            goto fail;
        }
        if (t->offset % f->alignment) {
            errf(err, cap, "%s: tensor '%s' offset %llu is not a multiple of the alignment %llu", path, t->name,
                 (unsigned long long)t->offset, (unsigned long long)f->alignment);
            goto fail;
        }
    }
    /* data section starts at the next multiple of the alignment */
    uint64_t data = c.pos + (f->alignment - c.pos % f->alignment) % f->alignment;
    f->data_offset = data;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (data > size || t->offset > size - data || t->nbytes > size - data - t->offset) {
            errf(err, cap, "%s: tensor '%s' data (offset %llu, %llu bytes) runs past the end of the file (%zu bytes)", path,
                 t->name, (unsigned long long)(data + t->offset), (unsigned long long)t->nbytes, size);
            goto fail;
        }
        t->data = (const uint8_t *)buf + data + t->offset;
    }
    if (f->n_tensors > 1) {
        const gguf_tensor **idx = malloc(f->n_tensors * sizeof *idx);
        if (!idx) {
            errf(err, cap, "%s: out of memory", path);
            goto fail;
        }
        for (uint64_t i = 0; i < f->n_tensors; i++) idx[i] = &f->tensors[i];
        qsort(idx, f->n_tensors, sizeof *idx, cmp_names);
        for (uint64_t i = 1; i < f->n_tensors; i++)
            if (!strcmp(idx[i - 1]->name, idx[i]->name)) {
                errf(err, cap, "%s: duplicate tensor name '%s'", path, idx[i]->name);
                free(idx);
                goto fail;
            }
        free(idx);
    }
    return 0;
fail:
    f->base = NULL;  /* not ours to unmap in the buffer case; gguf_open handles its mapping */
    gguf_close(f);
    return -1;
}

int gguf_open(gguf_file *f, const char *path, char *err, size_t cap) {
    memset(f, 0, sizeof *f);
    void *p;
    size_t size;
    if (file_map(path, 24, "GGUF", &p, &size, err, cap)) return -1;
    if (gguf_parse(f, p, size, path, err, cap)) {
        munmap(p, size);
        return -1;
    }
    f->mapped = 1;
    return 0;
}

void gguf_close(gguf_file *f) {
    if (f->kv) {
        gguf_priv *priv = (gguf_priv *)f->kv - 1;
        for (uint64_t i = 0; i < f->n_kv; i++) {
            free(f->kv[i].strs);
            free(f->kv[i].str_lens);
        }
        arena_free(priv->chunks);
        free(priv);
    }
    free(f->tensors);
    if (f->mapped && f->base) munmap((void *)f->base, f->size);
    memset(f, 0, sizeof *f);
}

const gguf_kv *gguf_get(const gguf_file *f, const char *key) {
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key && !strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

int gguf_get_int(const gguf_file *f, const char *key, int64_t *out, char *err, size_t cap) {
    const gguf_kv *kv = gguf_get(f, key);
    if (!kv) return 0;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        if (kv->v.u > (uint64_t)INT64_MAX) break;
        *out = (int64_t)kv->v.u;
        return 1;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64: *out = kv->v.i; return 1;
    }
    errf(err, cap, "%s: metadata key '%s' should be an integer (is %s)", f->path, key, gguf_type_name(kv->type));
    return -1;
}

int gguf_get_float(const gguf_file *f, const char *key, double *out, char *err, size_t cap) {
    const gguf_kv *kv = gguf_get(f, key);
    if (!kv) return 0;
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64) {
        *out = kv->v.f;
        return 1;
    }
    int64_t i;
    int r = gguf_get_int(f, key, &i, NULL, 0);
    if (r == 1) {
        *out = (double)i;
        return 1;
    }
    errf(err, cap, "%s: metadata key '%s' should be a number (is %s)", f->path, key, gguf_type_name(kv->type));
    return -1;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out, char *err, size_t cap) {
    const gguf_kv *kv = gguf_get(f, key);
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_BOOL) {
        errf(err, cap, "%s: metadata key '%s' should be a bool (is %s)", f->path, key, gguf_type_name(kv->type));
        return -1;
    }
    *out = (int)kv->v.u;
    return 1;
}

const char *gguf_get_str(const gguf_file *f, const char *key) {
    const gguf_kv *kv = gguf_get(f, key);
    return kv && kv->type == GGUF_TYPE_STRING ? kv->str : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

int gguf_tensor_to_f32(const gguf_file *f, const gguf_tensor *t, float *out, char *err, size_t cap) {
    char e2[256];
    if (quant_dequantize(t->type, t->data, (size_t)t->n_elems, out, e2, sizeof e2))
        return errf(err, cap, "%s: tensor '%s': %s", f->path, t->name, e2);
    return 0;
}

/* ---- writer ---- */

typedef struct wtensor {
    char *name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    int type;
    const void *data;
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    uint8_t *kv;           /* serialised metadata */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *t;
    size_t n_t, cap_t;
    int oom;
};

gguf_writer *gguf_writer_new(void) { return calloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w->kv);
    free(w);
}

static void put(gguf_writer *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *q = realloc(w->kv, cap);
        if (!q) {
            w->oom = 1;
            return;
        }
        w->kv = q;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_str(gguf_writer *w, const char *s, uint64_t len) {
    put(w, &len, 8);
    put(w, s, len);
}

static void put_key(gguf_writer *w, const char *key, uint32_t type) {
    put_str(w, key, strlen(key));
    put(w, &type, 4);
    w->n_kv++;
}

void gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) { put_key(w, key, GGUF_TYPE_UINT32); put(w, &v, 4); }
void gguf_set_i32(gguf_writer *w, const char *key, int32_t v) { put_key(w, key, GGUF_TYPE_INT32); put(w, &v, 4); }
void gguf_set_u64(gguf_writer *w, const char *key, uint64_t v) { put_key(w, key, GGUF_TYPE_UINT64); put(w, &v, 8); }
void gguf_set_f32(gguf_writer *w, const char *key, float v) { put_key(w, key, GGUF_TYPE_FLOAT32); put(w, &v, 4); }
void gguf_set_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    put_key(w, key, GGUF_TYPE_BOOL);
    put(w, &b, 1);
}
void gguf_set_str(gguf_writer *w, const char *key, const char *s) {
    put_key(w, key, GGUF_TYPE_STRING);
    put_str(w, s, strlen(s));
}
void gguf_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n) {
    put_key(w, key, GGUF_TYPE_ARRAY);
    put(w, &elem_type, 4);
    put(w, &n, 8);
    put(w, data, n * gguf_type_size(elem_type));
}
void gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n) {
    uint32_t t = GGUF_TYPE_STRING;
    put_key(w, key, GGUF_TYPE_ARRAY);
    put(w, &t, 4);
    put(w, &n, 8);
    for (uint64_t i = 0; i < n; i++) put_str(w, strs[i], lens ? lens[i] : strlen(strs[i]));
}

int gguf_add_tensor(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, int type, const void *data,
                    char *err, size_t cap) {
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return errf(err, cap, "gguf writer: tensor '%s' has %d dims", name, n_dims);
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, nc * sizeof *t);
        if (!t) return errf(err, cap, "gguf writer: out of memory");
        w->t = t;
        w->cap_t = nc;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    uint64_t n = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    for (int d = 0; d < n_dims; d++) n *= (uint64_t)ne[d];
    if (ggml_row_bytes(type, n, &t->nbytes))
        return errf(err, cap, "gguf writer: tensor '%s': bad type %d or size", name, type);
    t->name = strdup(name);
    if (!t->name) return errf(err, cap, "gguf writer: out of memory");
    t->n_dims = n_dims;
    t->type = type;
    t->data = data;
    w->n_t++;
    return 0;
}

static int write_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n ? 0 : -1; }

int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t cap) {
    if (w->oom) return errf(err, cap, "%s: out of memory building GGUF metadata", path);
    const uint64_t align = GGUF_DEFAULT_ALIGNMENT;
    static const uint8_t zeros[GGUF_DEFAULT_ALIGNMENT] = {0};
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        off += w->t[i].nbytes;
        off += (align - off % align) % align;
    }
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return errf(err, cap, "%s: path too long", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return errf(err, cap, "%s: %s", tmp, strerror(errno));
    uint32_t version = 3;
    uint64_t nt = w->n_t;
    int bad = write_all(fp, GGUF_MAGIC, 4) || write_all(fp, &version, 4) || write_all(fp, &nt, 8) ||
              write_all(fp, &w->n_kv, 8) || write_all(fp, w->kv, w->kv_len);
    uint64_t pos = 24 + w->kv_len;
    for (size_t i = 0; i < w->n_t && !bad; i++) {
        wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims, ty = (uint32_t)t->type;
        bad = write_all(fp, &len, 8) || write_all(fp, t->name, len) || write_all(fp, &nd, 4);
        for (int d = 0; d < t->n_dims && !bad; d++) bad = write_all(fp, &t->ne[d], 8);
        bad = bad || write_all(fp, &ty, 4) || write_all(fp, &t->offset, 8);
        pos += 8 + len + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    if (!bad) bad = write_all(fp, zeros, (align - pos % align) % align);
    off = 0;
    for (size_t i = 0; i < w->n_t && !bad; i++) {
        bad = write_all(fp, w->t[i].data, w->t[i].nbytes);
        off += w->t[i].nbytes;
        uint64_t pad = (align - off % align) % align;
        bad = bad || write_all(fp, zeros, pad);
        off += pad;
    }
    if (!bad) bad = fflush(fp) || fsync(fileno(fp));
    int e = errno;
    if (fclose(fp)) bad = 1;
    if (bad) {
        unlink(tmp);
        return errf(err, cap, "%s: write failed: %s", tmp, strerror(e));
    }
    if (rename(tmp, path)) {
        e = errno;
        unlink(tmp);
        return errf(err, cap, "%s: rename from %s: %s", path, tmp, strerror(e));
    }
    return 0;
}
