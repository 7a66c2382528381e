/* trainer/safetensors.c: safetensors reader (bounds-checked, mmap), sharded
 * sets via model.safetensors.index.json, and writer (see safetensors.h). */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "util.h"

#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

static const struct {
    const char *name;
    size_t size;
} DTYPES[ST_NDTYPES] = {
    [ST_F32] = {"F32", 4},  [ST_F16] = {"F16", 2},   [ST_BF16] = {"BF16", 2},       [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8},  [ST_I32] = {"I32", 4},   [ST_I16] = {"I16", 2},         [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
    [ST_U16] = {"U16", 2},  [ST_U32] = {"U32", 4},   [ST_U64] = {"U64", 8},
};

const char *st_dtype_name(int d) { return d >= 0 && d < ST_NDTYPES ? DTYPES[d].name : "?"; }
size_t st_dtype_size(int d) { return d >= 0 && d < ST_NDTYPES ? DTYPES[d].size : 0; }

static int dtype_parse(const char *s) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(DTYPES[i].name, s)) return i;
    return -1;
}

int st_parse(st_file *f, const void *buf, size_t size, const char *name, char *err, size_t cap) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", name);
    const char *path = f->path;
    f->base = buf;
    f->size = size;
    uint64_t hlen;
    if (size < 8) return errf(err, cap, "%s: too small to be a safetensors file (%zu bytes)", path, size);
    memcpy(&hlen, buf, 8);
    if (hlen > ST_MAX_HEADER || hlen > size - 8)
        return errf(err, cap, "%s: header length %llu exceeds the file (%zu bytes) or the 100 MB limit", path,
                    (unsigned long long)hlen, size);
    const uint8_t *data = (const uint8_t *)buf + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    json_error_t je;
    json_t *root = json_loadb((const char *)buf + 8, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return errf(err, cap, "%s: header is not valid JSON: %s (at byte %d)", path, je.text, je.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return errf(err, cap, "%s: header is not a JSON object", path);
    }
    size_t n = json_object_size(root), names_len = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) names_len += strlen(key) + 1;
    f->t = calloc(n + 1, sizeof(st_tensor));
    f->names = malloc(names_len + 1);
    if (!f->t || !f->names) {
        json_decref(root);
        st_close(f);
        return errf(err, cap, "%s: out of memory", path);
    }
    char *np = f->names;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        st_tensor *t = &f->t[f->n];
        if (!json_is_object(val)) {
            errf(err, cap, "%s: tensor '%s': entry is not an object", path, key);
            goto fail;
        }
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
               *jo = json_object_get(val, "data_offsets");
        if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2) {
            errf(err, cap, "%s: tensor '%s': needs dtype (string), shape (array) and data_offsets ([begin, end])", path, key);
            goto fail;
        }
        t->dtype = dtype_parse(json_string_value(jd));
        if (t->dtype < 0) {
            errf(err, cap, "%s: tensor '%s': unknown dtype '%s'", path, key, json_string_value(jd));
            goto fail;
        }
        if (json_array_size(js) > ST_MAX_DIMS) {
            errf(err, cap, "%s: tensor '%s': %zu dimensions (at most %d)", path, key, json_array_size(js), ST_MAX_DIMS);
            goto fail;
        }
        t->ndim = (int)json_array_size(js);
        uint64_t ne = 1;
        for (int d = 0; d < t->ndim; d++) {
            json_t *x = json_array_get(js, d);
            json_int_t v = json_is_integer(x) ? json_integer_value(x) : -1;
            if (v < 0 || (v && ne > (uint64_t)INT64_MAX / (uint64_t)v)) {
                errf(err, cap, "%s: tensor '%s': bad or absurd dimension %d", path, key, d);
                goto fail;
            }
            t->shape[d] = v;
            ne *= (uint64_t)v;
        }
        t->n_elems = ne;
        size_t es = DTYPES[t->dtype].size;
        json_t *b = json_array_get(jo, 0), *e = json_array_get(jo, 1);
        json_int_t bi = json_is_integer(b) ? json_integer_value(b) : -1, ei = json_is_integer(e) ? json_integer_value(e) : -1;
        if (bi < 0 || ei < bi || (uint64_t)ei > data_size) {
            errf(err, cap, "%s: tensor '%s': data_offsets [%lld, %lld] outside the %llu data bytes", path, key,
                 (long long)bi, (long long)ei, (unsigned long long)data_size);
            goto fail;
        }
        if (ne > UINT64_MAX / es || (uint64_t)(ei - bi) != ne * es) {
            errf(err, cap, "%s: tensor '%s': %lld data bytes do not match shape and dtype %s", path, key,
                 (long long)(ei - bi), DTYPES[t->dtype].name);
            goto fail;
        }
        t->nbytes = (uint64_t)(ei - bi);
        t->data = data + bi;
        size_t kl = strlen(key);
        memcpy(np, key, kl + 1);
        t->name = np;
        np += kl + 1;
        f->n++;
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    f->base = NULL;
    st_close(f);
    return -1;
}

int st_open(st_file *f, const char *path, char *err, size_t cap) {
    memset(f, 0, sizeof *f);
    void *p;
    size_t size;
    if (file_map(path, 8, "safetensors", &p, &size, err, cap)) return -1;
    if (st_parse(f, p, size, path, err, cap)) {
        munmap(p, size);
        return -1;
    }
    f->mapped = 1;
    return 0;
}

void st_close(st_file *f) {
    free(f->t);
    free(f->names);
    if (f->mapped && f->base) munmap((void *)f->base, f->size);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

int st_tensor_to_f32(const st_file *f, const st_tensor *t, float *out, char *err, size_t cap) {
    const uint8_t *s = t->data;
    size_t n = (size_t)t->n_elems;
    switch (t->dtype) {
    case ST_F32: memcpy(out, s, n * 4); return 0;
    case ST_F16: fp16_to_fp32_row(s, out, n); return 0;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) out[i] = bf16_to_fp32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return 0;
    }
    return errf(err, cap, "%s: tensor '%s' has dtype %s; rft reads F32, F16 and BF16", f->path, t->name,
                st_dtype_name(t->dtype));
}

/* ---- sets ---- */

int st_set_open(st_set *s, const char *dir, char *err, size_t cap) {
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (access(path, F_OK) == 0) {
        json_error_t je;
        json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        if (!root) return errf(err, cap, "%s:%d: %s", path, je.line, je.text);
        json_t *wm = json_object_get(root, "weight_map");
        if (!json_is_object(wm)) {
            json_decref(root);
            return errf(err, cap, "%s: no \"weight_map\" object", path);
        }
        /* distinct shard names, in first-seen order */
        size_t nw = json_object_size(wm);
        const char **shards = calloc(nw + 1, sizeof *shards);
        if (!shards) {
            json_decref(root);
            return errf(err, cap, "%s: out of memory", path);
        }
        int ns = 0;
        const char *key;
        json_t *v;
        int bad = 0;
        json_object_foreach(wm, key, v) {
            const char *fn = json_string_value(v);
            if (!fn || strchr(fn, '/') || !strcmp(fn, "..") || !*fn) {
                errf(err, cap, "%s: weight_map entry '%s' is not a file name in the directory", path, key);
                bad = 1;
                break;
            }
            int seen = 0;
            for (int i = 0; i < ns && !seen; i++) seen = !strcmp(shards[i], fn);
            if (!seen) shards[ns++] = fn;
        }
        if (!bad && ns == 0) bad = errf(err, cap, "%s: weight_map is empty", path) != 0;
        if (!bad) {
            s->files = calloc((size_t)ns, sizeof(st_file));
            if (!s->files) bad = errf(err, cap, "%s: out of memory", path) != 0;
        }
        for (int i = 0; i < ns && !bad; i++) {
            char sp[1100];
            snprintf(sp, sizeof sp, "%s/%s", dir, shards[i]);
            if (st_open(&s->files[i], sp, err, cap)) bad = 1;
            else s->n_files++;
        }
        /* every mapped tensor must be in the shard the index names */
        if (!bad) {
            json_object_foreach(wm, key, v) {
                const st_file *file = NULL;
                const st_tensor *t = st_set_find(s, key, &file);
                const char *slash = file ? strrchr(file->path, '/') : NULL;
                if (!t || strcmp(slash ? slash + 1 : file->path, json_string_value(v))) {
                    errf(err, cap, "%s: tensor '%s' is not in shard %s", path, key, json_string_value(v));
                    bad = 1;
                    break;
                }
            }
        }
        free(shards);
        json_decref(root);
        if (bad) {
            st_set_close(s);
            return -1;
        }
        return 0;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) == 0) {
        s->files = calloc(1, sizeof(st_file));
        if (!s->files) return errf(err, cap, "%s: out of memory", dir);
        if (st_open(&s->files[0], path, err, cap)) {
            st_set_close(s);
            return -1;
        }
        s->n_files = 1;
        return 0;
    }
    /* no index and no model.safetensors: every *.safetensors in the directory, in name order */
    struct dirent **ents = NULL;
    int ne = scandir(dir, &ents, NULL, alphasort), bad = 0;
    if (ne < 0) return errf(err, cap, "%s: %s", dir, strerror(errno));
    int n = 0;
    for (int i = 0; i < ne; i++) {
        size_t l = strlen(ents[i]->d_name);
        n += l > 12 && !strcmp(ents[i]->d_name + l - 12, ".safetensors");
    }
    if (n == 0) bad = errf(err, cap, "%s: no model.safetensors, model.safetensors.index.json or *.safetensors", dir) != 0;
    else if (!(s->files = calloc((size_t)n, sizeof(st_file)))) bad = errf(err, cap, "%s: out of memory", dir) != 0;
    for (int i = 0; i < ne && !bad; i++) {
        size_t l = strlen(ents[i]->d_name);
        if (l <= 12 || strcmp(ents[i]->d_name + l - 12, ".safetensors")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, ents[i]->d_name);
        if (st_open(&s->files[s->n_files], path, err, cap)) bad = 1;
        else s->n_files++;
    }
    for (int i = 0; i < ne; i++) free(ents[i]);
    free(ents);
    /* a tensor name in two files would be ambiguous */
    for (int a = 0; a < s->n_files && !bad; a++)
        for (int i = 0; i < s->files[a].n && !bad; i++)
            for (int b = a + 1; b < s->n_files && !bad; b++)
                if (st_find(&s->files[b], s->files[a].t[i].name))
                    bad = errf(err, cap, "%s: tensor '%s' is in both %s and %s", dir, s->files[a].t[i].name,
                               s->files[a].path, s->files[b].path) != 0;
    if (bad) {
        st_set_close(s);
        return -1;
    }
    return 0;
}

void st_set_close(st_set *s) {
    for (int i = 0; i < s->n_files; i++) st_close(&s->files[i]);
    free(s->files);
    memset(s, 0, sizeof *s);
}

const st_tensor *st_set_find(const st_set *s, const char *name, const st_file **file) {
    for (int i = 0; i < s->n_files; i++) {
        const st_tensor *t = st_find(&s->files[i], name);
        if (t) {
            if (file) *file = &s->files[i];
            return t;
        }
    }
    return NULL;
}

/* ---- writer ---- */

static uint64_t wt_bytes(const st_wtensor *t) {
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (uint64_t)t->shape[d];
    return n * st_dtype_size(t->dtype);
}

int st_write(const char *path, const st_wtensor *t, int n, char *err, size_t cap) {
    json_t *root = json_object(), *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < t[i].ndim; d++) json_array_append_new(shape, json_integer(t[i].shape[d]));
        uint64_t nb = wt_bytes(&t[i]);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + nb)));
        json_object_set_new(e, "dtype", json_string(st_dtype_name(t[i].dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        if (json_object_set_new(root, t[i].name, e)) {
            json_decref(root);
            return errf(err, cap, "%s: cannot add tensor '%s' to the header", path, t[i].name);
        }
        off += nb;
    }
    char *h = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!h) return errf(err, cap, "%s: out of memory", path);
    uint64_t hl = strlen(h), padded = (hl + 7) / 8 * 8;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(h);
        return errf(err, cap, "%s: %s", tmp, strerror(errno));
    }
    int bad = fwrite(&padded, 8, 1, fp) != 1 || fwrite(h, 1, hl, fp) != hl;
    for (uint64_t i = hl; i < padded && !bad; i++) bad = fputc(' ', fp) == EOF;
    free(h);
    for (int i = 0; i < n && !bad; i++) {
        uint64_t nb = wt_bytes(&t[i]);
        bad = fwrite(t[i].data, 1, nb, fp) != nb;
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
        return errf(err, cap, "%s: rename: %s", path, strerror(e));
    }
    return 0;
}

/* Removes the weights of an earlier export that the new layout does not
   overwrite (a stale index would otherwise win on load): model.safetensors
   and/or the index and model-NNNNN-of-MMMMM.safetensors shards not of n_keep. */
static void remove_stale(const char *dir, int keep_single, int n_keep) {
    char path[1100];
    if (!keep_single) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        unlink(path);
    }
    if (keep_single) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        unlink(path);
    }
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int a, b, k = 0;
        if (sscanf(e->d_name, "model-%5d-of-%5d.safetensors%n", &a, &b, &k) == 2 && k && !e->d_name[k] &&
            (keep_single || b != n_keep)) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

int st_write_dir(const char *dir, const st_wtensor *t, int n, uint64_t max_shard, char *err, size_t cap) {
    char path[1100];
    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += wt_bytes(&t[i]);
    if (max_shard == 0 || total <= max_shard) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        int r = st_write(path, t, n, err, cap);
        if (!r) remove_stale(dir, 1, 0);
        return r;
    }
    /* greedy shards: a new shard when the next tensor would pass max_shard */
    int n_shards = 0;
    uint64_t acc = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = wt_bytes(&t[i]);
        if (i == 0 || acc + b > max_shard) n_shards++, acc = 0;
        acc += b;
    }
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", wm);
    int shard = 0, first = 0;
    acc = 0;
    for (int i = 0; i <= n; i++) {
        uint64_t b = i < n ? wt_bytes(&t[i]) : 0;
        if (i == n || (i > first && acc + b > max_shard)) {
            char fn[64];
            snprintf(fn, sizeof fn, "model-%05d-of-%05d.safetensors", ++shard, n_shards);
            snprintf(path, sizeof path, "%s/%s", dir, fn);
            if (st_write(path, t + first, i - first, err, cap)) {
                json_decref(root);
                return -1;
            }
            for (int k = first; k < i; k++) json_object_set_new(wm, t[k].name, json_string(fn));
            first = i;
            acc = 0;
        }
        acc += b;
    }
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    int r = json_dump_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (r) return errf(err, cap, "%s: cannot write", path);
    remove_stale(dir, 0, n_shards);
    return 0;
}
