/* trainer/checkpoint.c: HDF5 checkpoint writing (temp file, flush, fsync,
 * rename) and fully checked reading. Layout in checkpoint.h and
 * docs/checkpoint.md. Every HDF5 call is checked; HDF5's own error printing is
 * silenced and its innermost message is appended to ours where it helps. */
#define _GNU_SOURCE
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

struct ckpt_file {
    char *path;
    hid_t fid;
    model_config cfg;
    int has_optim, has_train, has_tok;
};

/* ---------------------------------------------------------------- helpers */

static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t h5_err_first(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    if (n == 0 && e->desc) snprintf(buf, 200, "%s", e->desc);
    return 0;
}

/* innermost message of the current HDF5 error stack ("" if none) */
static const char *h5_detail(char *buf) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_err_first, buf);
    return buf;
}

/* closes an id of any kind if valid; keeps error paths short */
static void h5_close(hid_t id) {
    if (id < 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

static hid_t file_access_plist(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    /* closing the file closes everything still open in it */
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        H5Pclose(fapl);
        return -1;
    }
#if H5_VERSION_GE(1, 10, 7)
    /* lock when the file system can, work on ones that cannot (NFS, Lustre) */
    if (H5Pset_file_locking(fapl, 1, 1) < 0) {
        H5Pclose(fapl);
        return -1;
    }
#endif
    return fapl;
}

static int is_tied_head(const model_config *c, const char *name) {
    return c->tie_embeddings && !strcmp(name, "lm_head.weight");
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* "float32", "float64", "int32", "uint8", "string", ... */
static void type_str(hid_t tid, char *buf, size_t cap) {
    H5T_class_t cls = H5Tget_class(tid);
    size_t sz = H5Tget_size(tid);
    switch (cls) {
    case H5T_FLOAT: snprintf(buf, cap, "float%zu", sz * 8); break;
    case H5T_INTEGER: snprintf(buf, cap, "%sint%zu", H5Tget_sign(tid) == H5T_SGN_NONE ? "u" : "", sz * 8); break;
    case H5T_STRING: snprintf(buf, cap, "string"); break;
    case H5T_COMPOUND: snprintf(buf, cap, "compound"); break;
    case H5T_ENUM: snprintf(buf, cap, "enum"); break;
    case H5T_ARRAY: snprintf(buf, cap, "array"); break;
    case H5T_VLEN: snprintf(buf, cap, "vlen"); break;
    case H5T_OPAQUE: snprintf(buf, cap, "opaque"); break;
    case H5T_REFERENCE: snprintf(buf, cap, "reference"); break;
    case H5T_BITFIELD: snprintf(buf, cap, "bitfield"); break;
    default: snprintf(buf, cap, "unknown"); break;
    }
}

static const char *sched_name(lr_schedule s) {
    switch (s) {
    case LR_CONSTANT: return "constant";
    case LR_LINEAR: return "linear";
    case LR_COSINE: return "cosine";
    }
    return "?";
}

int ckpt_is_hdf5(const char *path) {
    /* the signature sits at 0 or at a userblock offset 512, 1024, 2048, ... */
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int found = 0;
    for (long off = 0; off <= (1L << 20) && !found; off = off ? off * 2 : 512) {
        unsigned char b[8];
        if (fseek(f, off, SEEK_SET) != 0 || fread(b, 1, 8, f) != 8) break;
        found = !memcmp(b, sig, 8);
    }
    fclose(f);
    return found;
}

/* ------------------------------------------------------- config limits */

typedef struct cfg_field {
    const char *name;
    int is_float;
    size_t off;
    double lo, hi;   /* inclusive range */
} cfg_field;

#define CF_I(f, lo, hi) {#f, 0, offsetof(model_config, f), lo, hi}
#define CF_F(f, lo, hi) {#f, 1, offsetof(model_config, f), lo, hi}
static const cfg_field CFG_FIELDS[] = {
    /* the same limits model_create applies (model.c config_check) */
    CF_I(vocab, 1, 1 << 24),       CF_I(d_model, 1, 1 << 16),   CF_I(n_layer, 1, 1024),
    CF_I(n_head, 1, 1024),         CF_I(n_kv_head, 1, 1024),    CF_I(head_dim, 2, 1024),
    CF_I(d_ff, 1, 1 << 20),        CF_F(rope_theta, 1e-3, 1e12), CF_F(rms_eps, 1e-30, 0.5),
    CF_I(tie_embeddings, 0, 1),    CF_I(qkv_bias, 0, 1),        CF_I(max_seq, 1, 1 << 24),
};
#define N_CFG_FIELDS (sizeof CFG_FIELDS / sizeof CFG_FIELDS[0])

static double cfg_get(const model_config *c, const cfg_field *f) {
    const char *p = (const char *)c + f->off;
    return f->is_float ? (double)*(const float *)p : (double)*(const int *)p;
}

int ckpt_check_config(const model_config *c, char *err, size_t cap) {
    for (size_t i = 0; i < N_CFG_FIELDS; i++) {
        const cfg_field *f = &CFG_FIELDS[i];
        double v = cfg_get(c, f);
        if (!(v >= f->lo && v <= f->hi))
            return errf(err, cap, "config %s = %g is out of range [%g, %g]", f->name, v, f->lo, f->hi);
    }
    if (c->n_kv_head > c->n_head || c->n_head % c->n_kv_head)
        return errf(err, cap, "config n_kv_head = %d must divide n_head = %d", c->n_kv_head, c->n_head);
    if (c->head_dim % 2) return errf(err, cap, "config head_dim = %d must be even (RoPE)", c->head_dim);
    /* parameters must fit comfortably in memory arithmetic */
    double D = c->d_model, q = (double)c->n_head * c->head_dim, kv = (double)c->n_kv_head * c->head_dim;
    double per_layer = 2 * D + D * q + 2 * D * kv + q * D + 3 * D * c->d_ff + q + 2 * kv;
    double total = (double)c->vocab * D * (c->tie_embeddings ? 1 : 2) + D + per_layer * c->n_layer;
    if (total > 1e12) return errf(err, cap, "config describes %.3g parameters (more than 1e12)", total);
    return 0;
}

/* --------------------------------------------------------------- writing */

static int w_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *val) {
    hid_t sid = H5Screate(H5S_SCALAR);
    if (sid < 0) return -1;
    hid_t aid = H5Acreate2(obj, name, ftype, sid, H5P_DEFAULT, H5P_DEFAULT);
    int rc = aid < 0 || H5Awrite(aid, mtype, val) < 0 ? -1 : 0;
    h5_close(aid);
    H5Sclose(sid);
    return rc;
}
static int w_i64(hid_t obj, const char *name, int64_t v) { return w_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v); }
static int w_u64(hid_t obj, const char *name, uint64_t v) { return w_attr(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v); }
static int w_f64(hid_t obj, const char *name, double v) { return w_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v); }
/* float32 fields stay float32 on disk: exact, and h5py shows 1e-05, not 9.99999974e-06 */
static int w_f32(hid_t obj, const char *name, float v) { return w_attr(obj, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v); }

static hid_t str_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, len + 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static int w_str_attr(hid_t obj, const char *name, const char *s) {
    hid_t t = str_type(strlen(s));
    if (t < 0) return -1;
    int rc = w_attr(obj, name, t, t, s);
    H5Tclose(t);
    return rc;
}

/* one fixed-length string in a 1-element dataset (config text can exceed the
 * 64 KiB attribute limit), chunked so that it carries a Fletcher-32 checksum */
static int w_str_dataset(hid_t g, const char *name, const char *s) {
    hsize_t one = 1;
    hid_t t = str_type(strlen(s)), sid = H5Screate_simple(1, &one, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), did = -1;
    int rc = -1;
    if (t >= 0 && sid >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &one) >= 0 && H5Pset_fletcher32(dcpl) >= 0) {
        did = H5Dcreate2(g, name, t, sid, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (did >= 0 && H5Dwrite(did, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s) >= 0) rc = 0;
    }
    h5_close(did);
    h5_close(dcpl);
    h5_close(sid);
    h5_close(t);
    return rc;
}

/* A dataset of rank 1 or 2 with a Fletcher-32 checksum per chunk (chunks of
 * whole rows, <= 16 MiB), which HDF5 verifies on every read: flipped bits in
 * a tensor are an error, not silently different weights. */
static int w_dataset(hid_t g, const char *name, hid_t ftype, hid_t mtype, int ndim, const int64_t *shape, const void *data) {
    if (ndim < 1 || ndim > 2) return -1;
    hsize_t dims[2], chunk[2];
    size_t esize = H5Tget_size(ftype);
    hsize_t row = 1, n = 1;
    for (int i = 0; i < ndim; i++) {
        dims[i] = chunk[i] = (hsize_t)shape[i];
        n *= dims[i];
        if (i) row *= dims[i];
    }
    hsize_t rows = ((hsize_t)16 << 20) / (row * esize);
    if (rows < 1) rows = 1;
    if (chunk[0] > rows) {
        /* equal chunks: HDF5 stores edge chunks whole, so a ragged split wastes space */
        hsize_t n_chunks = (dims[0] + rows - 1) / rows;
        chunk[0] = (dims[0] + n_chunks - 1) / n_chunks;
    }
    hid_t sid = H5Screate_simple(ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int rc = -1;
    if (sid >= 0 && dcpl >= 0 &&
        (n == 0 || (H5Pset_chunk(dcpl, ndim, chunk) >= 0 && H5Pset_fletcher32(dcpl) >= 0))) {
        hid_t did = H5Dcreate2(g, name, ftype, sid, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        rc = did < 0 || H5Dwrite(did, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? -1 : 0;
        h5_close(did);
    }
    h5_close(dcpl);
    h5_close(sid);
    return rc;
}

int ckpt_write_dataset(hid_t group, const char *name, hid_t file_type, hid_t mem_type, int ndim, const int64_t *shape,
                       const void *data) {
    h5_quiet();
    return w_dataset(group, name, file_type, mem_type, ndim, shape, data);
}

static size_t max_numel(const model *m) {
    size_t mx = 1;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > mx) mx = m->tensors[i].numel;
    return mx;
}

static long first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (long)i;
    return -1;
}

/* one float32 dataset per table tensor from device buffer src (laid out like
 * m->params) into group g; what names the buffer in messages */
static int w_tensors(hid_t g, const model *m, const float *src, float *host, const char *what, const char *path,
                     char *err, size_t cap) {
    char d[200];
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if (is_tied_head(&m->cfg, t->name)) continue;
        m->be->copy_d2h(m->be, host, src + t->offset, t->numel * sizeof(float));
        if (m->be->sync(m->be) != 0) return errf(err, cap, "%s: copying %s %s from the device: %s", path, what, t->name, m->be->err);
        long bad = first_nonfinite(host, t->numel);
        if (bad >= 0)
            return errf(err, cap, "%s: refusing to save: %s %s holds a non-finite value (%g) at index %ld", path, what,
                        t->name, (double)host[bad], bad);
        if (w_dataset(g, t->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t->ndim, t->shape, host) < 0)
            return errf(err, cap, "%s: writing %s %s: %s", path, what, t->name, h5_detail(d));
    }
    return 0;
}

static int w_root(hid_t fid, const model_config *c) {
    if (w_str_attr(fid, "format", CKPT_FORMAT_NAME) < 0 || w_i64(fid, "format_version", CKPT_FORMAT_VERSION) < 0) return -1;
    for (size_t i = 0; i < N_CFG_FIELDS; i++) {
        const cfg_field *f = &CFG_FIELDS[i];
        double v = cfg_get(c, f);
        if ((f->is_float ? w_f32(fid, f->name, (float)v) : w_i64(fid, f->name, (int64_t)v)) < 0) return -1;
    }
    return 0;
}

static int w_optim(hid_t fid, const model *m, const optim *o, float *host, const char *path, char *err, size_t cap) {
    char d[200];
    hid_t g = H5Gcreate2(fid, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return errf(err, cap, "%s: creating group /optimizer: %s", path, h5_detail(d));
    const optim_config *c = &o->cfg;
    int rc = w_i64(g, "step", o->step) | w_f32(g, "lr", c->lr) | w_f32(g, "beta1", c->beta1) |
             w_f32(g, "beta2", c->beta2) | w_f32(g, "eps", c->eps) | w_f32(g, "weight_decay", c->weight_decay) |
             w_f32(g, "grad_clip", c->grad_clip) | w_str_attr(g, "schedule", sched_name(c->schedule)) |
             w_i64(g, "warmup_steps", c->warmup_steps) | w_i64(g, "total_steps", c->total_steps) |
             w_f32(g, "min_lr_ratio", c->min_lr_ratio);
    if (rc) {
        H5Gclose(g);
        return errf(err, cap, "%s: writing /optimizer attributes: %s", path, h5_detail(d));
    }
    const char *names[2] = {"m", "v"};
    const float *bufs[2] = {o->mom, o->var};
    for (int k = 0; k < 2; k++) {
        hid_t s = H5Gcreate2(g, names[k], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (s < 0) {
            H5Gclose(g);
            return errf(err, cap, "%s: creating group /optimizer/%s: %s", path, names[k], h5_detail(d));
        }
        char what[32];
        snprintf(what, sizeof what, "optimizer %s of", names[k]);
        rc = w_tensors(s, m, bufs[k], host, what, path, err, cap);
        H5Gclose(s);
        if (rc) break;
    }
    H5Gclose(g);
    return rc;
}

static int scalar_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof(((ckpt_scalar *)0)->name)) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int w_train(hid_t fid, const ckpt_train_state *ts, const char *path, char *err, size_t cap) {
    char d[200];
    if (ts->n_scalars < 0 || ts->n_scalars > CKPT_MAX_SCALARS)
        return errf(err, cap, "%s: train state has %d scalars (at most %d)", path, ts->n_scalars, CKPT_MAX_SCALARS);
    for (int i = 0; i < ts->n_scalars; i++)
        if (!scalar_name_ok(ts->scalars[i].name))
            return errf(err, cap, "%s: train state scalar name '%.60s' must be 1-47 chars of [A-Za-z0-9_.-]", path,
                        ts->scalars[i].name);
    if (ts->n_order < 0 || (ts->n_order > 0 && !ts->data_order))
        return errf(err, cap, "%s: train state data_order has n_order = %lld but no data", path, (long long)ts->n_order);
    hid_t g = H5Gcreate2(fid, "trainer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return errf(err, cap, "%s: creating group /trainer: %s", path, h5_detail(d));
    int rc = w_i64(g, "step", ts->step) | w_i64(g, "epoch", ts->epoch) | w_i64(g, "cursor", ts->cursor) |
             w_u64(g, "seed", ts->seed) | w_u64(g, "rng_counter", ts->rng_counter) |
             w_f64(g, "best_valid_reward", ts->best_valid_reward) | w_i64(g, "best_step", ts->best_step) |
             w_f64(g, "wall_seconds", ts->wall_seconds);
    if (!rc && ts->config_text) rc = w_str_dataset(g, "config_text", ts->config_text);
    if (!rc && ts->data_order) {
        int64_t shape[1] = {ts->n_order};
        rc = w_dataset(g, "data_order", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, shape, ts->data_order);
    }
    if (!rc) {
        hid_t s = H5Gcreate2(g, "scalars", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        rc = s < 0;
        for (int i = 0; !rc && i < ts->n_scalars; i++) rc = w_f64(s, ts->scalars[i].name, ts->scalars[i].value);
        h5_close(s);
    }
    H5Gclose(g);
    if (rc) return errf(err, cap, "%s: writing /trainer: %s", path, h5_detail(d));
    return 0;
}

static int fsync_path(const char *p, int dir) {
    int fd = open(p, dir ? (O_RDONLY | O_DIRECTORY) : O_RDWR);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int ckpt_save(const char *path, const model *m, const ckpt_parts *parts, char *err, size_t cap) {
    h5_quiet();
    static const ckpt_parts none = {0};
    if (!parts) parts = &none;
    char d[200];
    if (!m || !m->params || !m->tensors || m->n_tensors <= 0) return errf(err, cap, "%s: no model to save", path);
    if (ckpt_check_config(&m->cfg, d, sizeof d) < 0) return errf(err, cap, "%s: %s", path, d);
    if (parts->opt && (parts->opt->m != m || !parts->opt->mom || !parts->opt->var))
        return errf(err, cap, "%s: the optimizer does not belong to this model", path);
    if (parts->tokenizer && !parts->tokenizer_save)
        return errf(err, cap, "%s: a tokenizer was given without a save function", path);

    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 32, err, cap);
    if (!tmp) return -1;
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    float *host = xmalloc(max_numel(m) * sizeof(float), err, cap);
    if (!host) {
        free(tmp);
        return -1;
    }

    int rc = -1;
    hid_t fid = -1, g = -1;
    hid_t fapl = file_access_plist();
    /* the HDF5 1.10 file format (read by HDF5 >= 1.10, h5py, ...) checksums
     * all its metadata (superblock v3, object headers v2, v4 chunk indexes),
     * so damage there is caught; the 1.8 format still used unchecked v1
     * B-trees for chunk indexes */
    if (fapl < 0 || H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) < 0) {
        errf(err, cap, "%s: HDF5 property list: %s", path, h5_detail(d));
        goto out;
    }
    errno = 0;
    fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fid < 0) {
        errf(err, cap, "%s: cannot create %s: %s", path, tmp, errno ? strerror(errno) : h5_detail(d));
        goto out;
    }
    if (w_root(fid, &m->cfg) < 0) {
        errf(err, cap, "%s: writing root attributes: %s", path, h5_detail(d));
        goto out;
    }
    g = H5Gcreate2(fid, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) {
        errf(err, cap, "%s: creating group /model: %s", path, h5_detail(d));
        goto out;
    }
    if (w_tensors(g, m, m->params, host, "tensor", path, err, cap) < 0) goto out;
    H5Gclose(g);
    g = -1;
    if (parts->opt && w_optim(fid, m, parts->opt, host, path, err, cap) < 0) goto out;
    if (parts->train && w_train(fid, parts->train, path, err, cap) < 0) goto out;
    if (parts->tokenizer) {
        g = H5Gcreate2(fid, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            errf(err, cap, "%s: creating group /tokenizer: %s", path, h5_detail(d));
            goto out;
        }
        char terr[400] = "";
        if (parts->tokenizer_save(g, parts->tokenizer, terr, sizeof terr) != 0) {
            errf(err, cap, "%s: tokenizer: %s", path, terr[0] ? terr : "save failed");
            goto out;
        }
        H5Gclose(g);
        g = -1;
    }
    if (H5Fflush(fid, H5F_SCOPE_GLOBAL) < 0) {
        errf(err, cap, "%s: flushing %s: %s", path, tmp, h5_detail(d));
        goto out;
    }
    herr_t cr = H5Fclose(fid);
    fid = -1;
    if (cr < 0) {
        errf(err, cap, "%s: closing %s: %s", path, tmp, h5_detail(d));
        goto out;
    }
    if (fsync_path(tmp, 0) < 0) {
        errf(err, cap, "%s: fsync %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) < 0) {
        errf(err, cap, "%s: rename from %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    /* make the rename itself durable */
    char *dir = strdup(path);
    if (!dir) {
        errf(err, cap, "%s: out of memory", path);
        rc = -1;
        goto out_renamed;
    }
    char *slash = strrchr(dir, '/');
    const char *dname = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
    if (fsync_path(dname, 1) < 0) {
        errf(err, cap, "%s: fsync of directory %s: %s", path, dname, strerror(errno));
        free(dir);
        goto out_renamed;
    }
    free(dir);
    rc = 0;
    goto out_renamed;
out:
    h5_close(g);
    h5_close(fid);
    unlink(tmp);
out_renamed:
    h5_close(fapl);
    free(host);
    free(tmp);
    return rc;
}

/* --------------------------------------------------------------- reading */

/* names an object for messages: "/" or "/optimizer" */
typedef struct rd {
    const char *path;   /* file */
    const char *obj;    /* object path */
    char *err;
    size_t cap;
} rd;

/* opens attribute `name` of obj checking it exists and holds one value */
static hid_t r_attr_open(const rd *r, hid_t obj, const char *name) {
    char d[200];
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0) {
        errf(r->err, r->cap, "%s: attribute '%s' of %s cannot be read: %s", r->path, name, r->obj, h5_detail(d));
        return -1;
    }
    if (!ex) {
        errf(r->err, r->cap, "%s: attribute '%s' of %s is missing", r->path, name, r->obj);
        return -1;
    }
    hid_t aid = H5Aopen(obj, name, H5P_DEFAULT);
    if (aid < 0) {
        errf(r->err, r->cap, "%s: attribute '%s' of %s cannot be opened: %s", r->path, name, r->obj, h5_detail(d));
        return -1;
    }
    hid_t sid = H5Aget_space(aid);
    hssize_t np = sid < 0 ? -1 : H5Sget_simple_extent_npoints(sid);
    h5_close(sid);
    if (np != 1) {
        H5Aclose(aid);
        errf(r->err, r->cap, "%s: attribute '%s' of %s holds %lld values, expected one", r->path, name, r->obj,
             (long long)np);
        return -1;
    }
    return aid;
}

/* reads a numeric attribute as double; integer-only when want_int */
static int r_num(const rd *r, hid_t obj, const char *name, int want_int, double *out) {
    char d[200], ts[32];
    hid_t aid = r_attr_open(r, obj, name);
    if (aid < 0) return -1;
    hid_t tid = H5Aget_type(aid);
    H5T_class_t cls = tid < 0 ? H5T_NO_CLASS : H5Tget_class(tid);
    if (cls != H5T_INTEGER && !(cls == H5T_FLOAT && !want_int)) {
        if (tid >= 0) type_str(tid, ts, sizeof ts);
        else snprintf(ts, sizeof ts, "unknown");
        h5_close(tid);
        H5Aclose(aid);
        return errf(r->err, r->cap, "%s: attribute '%s' of %s has type %s, expected %s", r->path, name, r->obj, ts,
                    want_int ? "an integer" : "a number");
    }
    herr_t rc;
    if (cls == H5T_INTEGER && H5Tget_sign(tid) == H5T_SGN_NONE) {
        uint64_t u = 0;
        rc = H5Aread(aid, H5T_NATIVE_UINT64, &u);
        *out = (double)u;
    } else if (cls == H5T_INTEGER) {
        int64_t i = 0;
        rc = H5Aread(aid, H5T_NATIVE_INT64, &i);
        *out = (double)i;
    } else {
        rc = H5Aread(aid, H5T_NATIVE_DOUBLE, out);
    }
    H5Tclose(tid);
    H5Aclose(aid);
    if (rc < 0) return errf(r->err, r->cap, "%s: attribute '%s' of %s cannot be read: %s", r->path, name, r->obj, h5_detail(d));
    return 0;
}

/* integer attribute in [lo, hi] */
static int r_int(const rd *r, hid_t obj, const char *name, int64_t lo, int64_t hi, int64_t *out) {
    char d[200];
    hid_t aid = r_attr_open(r, obj, name);
    if (aid < 0) return -1;
    hid_t tid = H5Aget_type(aid);
    if (tid < 0 || H5Tget_class(tid) != H5T_INTEGER) {
        char ts[32] = "unknown";
        if (tid >= 0) type_str(tid, ts, sizeof ts);
        h5_close(tid);
        H5Aclose(aid);
        return errf(r->err, r->cap, "%s: attribute '%s' of %s has type %s, expected an integer", r->path, name, r->obj, ts);
    }
    int is_unsigned = H5Tget_sign(tid) == H5T_SGN_NONE;
    herr_t rc;
    int64_t v = 0;
    if (is_unsigned) {
        uint64_t u = 0;
        rc = H5Aread(aid, H5T_NATIVE_UINT64, &u);
        v = u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
    } else {
        rc = H5Aread(aid, H5T_NATIVE_INT64, &v);
    }
    H5Tclose(tid);
    H5Aclose(aid);
    if (rc < 0) return errf(r->err, r->cap, "%s: attribute '%s' of %s cannot be read: %s", r->path, name, r->obj, h5_detail(d));
    if (v < lo || v > hi)
        return errf(r->err, r->cap, "%s: attribute '%s' of %s = %lld is out of range [%lld, %lld]", r->path, name, r->obj,
                    (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

static int r_u64(const rd *r, hid_t obj, const char *name, uint64_t *out) {
    char d[200];
    hid_t aid = r_attr_open(r, obj, name);
    if (aid < 0) return -1;
    hid_t tid = H5Aget_type(aid);
    if (tid < 0 || H5Tget_class(tid) != H5T_INTEGER) {
        char ts[32] = "unknown";
        if (tid >= 0) type_str(tid, ts, sizeof ts);
        h5_close(tid);
        H5Aclose(aid);
        return errf(r->err, r->cap, "%s: attribute '%s' of %s has type %s, expected an unsigned integer", r->path, name,
                    r->obj, ts);
    }
    int neg = 0;
    herr_t rc;
    if (H5Tget_sign(tid) == H5T_SGN_NONE) {
        rc = H5Aread(aid, H5T_NATIVE_UINT64, out);
    } else {
        int64_t v = 0;
        rc = H5Aread(aid, H5T_NATIVE_INT64, &v);
        neg = v < 0;
        *out = (uint64_t)v;
    }
    H5Tclose(tid);
    H5Aclose(aid);
    if (rc < 0) return errf(r->err, r->cap, "%s: attribute '%s' of %s cannot be read: %s", r->path, name, r->obj, h5_detail(d));
    if (neg) return errf(r->err, r->cap, "%s: attribute '%s' of %s is negative", r->path, name, r->obj);
    return 0;
}

/* float attribute, finite and in [lo, hi] (allow_nan: NaN also accepted) */
static int r_real(const rd *r, hid_t obj, const char *name, double lo, double hi, int allow_nan, double *out) {
    double v;
    if (r_num(r, obj, name, 0, &v) < 0) return -1;
    if (!(allow_nan && isnan(v)) && !(v >= lo && v <= hi))
        return errf(r->err, r->cap, "%s: attribute '%s' of %s = %g is out of range [%g, %g]", r->path, name, r->obj, v, lo, hi);
    *out = v;
    return 0;
}

/* reads a string (fixed or variable length) from an attribute (is_attr) or a
 * scalar dataset into a new buffer */
static char *r_string(const rd *r, hid_t id, int is_attr, const char *what) {
    char d[200], ts[32];
    hid_t tid = is_attr ? H5Aget_type(id) : H5Dget_type(id);
    if (tid < 0) {
        errf(r->err, r->cap, "%s: %s cannot be read: %s", r->path, what, h5_detail(d));
        return NULL;
    }
    if (H5Tget_class(tid) != H5T_STRING) {
        type_str(tid, ts, sizeof ts);
        H5Tclose(tid);
        errf(r->err, r->cap, "%s: %s has type %s, expected a string", r->path, what, ts);
        return NULL;
    }
    if (!is_attr) {
        hid_t sid = H5Dget_space(id);
        hssize_t np = sid < 0 ? -1 : H5Sget_simple_extent_npoints(sid);
        h5_close(sid);
        if (np != 1) {
            H5Tclose(tid);
            errf(r->err, r->cap, "%s: %s holds %lld values, expected one string", r->path, what, (long long)np);
            return NULL;
        }
    }
    char *out = NULL;
    htri_t vl = H5Tis_variable_str(tid);
    if (vl > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        char *s = NULL;
        /* same character set as stored: HDF5 does not convert between ASCII and UTF-8 */
        herr_t rc = mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(tid)) < 0 ? -1
                    : is_attr ? H5Aread(id, mt, &s)
                              : H5Dread(id, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s);
        h5_close(mt);
        if (rc < 0) {
            errf(r->err, r->cap, "%s: %s cannot be read: %s", r->path, what, h5_detail(d));
        } else {
            out = strdup(s ? s : "");
            if (!out) errf(r->err, r->cap, "%s: out of memory reading %s", r->path, what);
        }
        if (s) H5free_memory(s);
    } else if (vl == 0) {
        size_t n = H5Tget_size(tid);
        out = n < ((size_t)1 << 31) ? calloc(n + 1, 1) : NULL;
        if (!out) {
            errf(r->err, r->cap, "%s: out of memory reading %s (%zu bytes)", r->path, what, n);
        } else {
            herr_t rc = is_attr ? H5Aread(id, tid, out) : H5Dread(id, tid, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
            if (rc < 0) {
                errf(r->err, r->cap, "%s: %s cannot be read: %s", r->path, what, h5_detail(d));
                free(out);
                out = NULL;
            }
        }
    } else {
        errf(r->err, r->cap, "%s: %s cannot be read: %s", r->path, what, h5_detail(d));
    }
    H5Tclose(tid);
    return out;
}

/* 1 if obj has a child `name` that is a group, 0 if no such link, -1 (+err)
 * if it exists but is not a group or cannot be checked */
static int r_has_group(const rd *r, hid_t obj, const char *name) {
    char d[200];
    htri_t ex = H5Lexists(obj, name, H5P_DEFAULT);
    if (ex < 0) return errf(r->err, r->cap, "%s: cannot look up %s: %s", r->path, name, h5_detail(d));
    if (!ex) return 0;
    hid_t o = H5Oopen(obj, name, H5P_DEFAULT);
    if (o < 0) return errf(r->err, r->cap, "%s: cannot open %s: %s", r->path, name, h5_detail(d));
    H5I_type_t t = H5Iget_type(o);
    h5_close(o);
    if (t != H5I_GROUP) return errf(r->err, r->cap, "%s: %s is not a group", r->path, name);
    return 1;
}

static int r_open_checked(const char *path, hid_t *fid_out, char *err, size_t cap) {
    char d[200];
    struct stat st;
    if (stat(path, &st) != 0) return errf(err, cap, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return errf(err, cap, "%s: is a directory, not a checkpoint file", path);
    if (!ckpt_is_hdf5(path)) return errf(err, cap, "%s: not an HDF5 file (no HDF5 signature)", path);
    hid_t fapl = file_access_plist();
    if (fapl < 0) return errf(err, cap, "%s: HDF5 property list: %s", path, h5_detail(d));
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (fid < 0) errf(err, cap, "%s: cannot open as HDF5 (truncated or damaged?): %s", path, h5_detail(d));
    H5Pclose(fapl);
    if (fid < 0) return -1;
    *fid_out = fid;
    return 0;
}

ckpt_file *ckpt_open(const char *path, char *err, size_t cap) {
    h5_quiet();
    hid_t fid = -1;
    if (r_open_checked(path, &fid, err, cap) < 0) return NULL;
    ckpt_file *f = xcalloc(1, sizeof *f, err, cap);
    if (!f) {
        H5Fclose(fid);
        return NULL;
    }
    f->fid = fid;
    f->path = strdup(path);
    if (!f->path) {
        errf(err, cap, "%s: out of memory", path);
        goto fail;
    }
    rd r = {path, "/", err, cap};
    hid_t aid = r_attr_open(&r, fid, "format");
    if (aid < 0) goto fail;
    char *fmt = r_string(&r, aid, 1, "attribute 'format' of /");
    H5Aclose(aid);
    if (!fmt) goto fail;
    if (strcmp(fmt, CKPT_FORMAT_NAME) != 0) {
        errf(err, cap, "%s: attribute 'format' of / is '%.60s', expected '%s'", path, fmt, CKPT_FORMAT_NAME);
        free(fmt);
        goto fail;
    }
    free(fmt);
    int64_t ver;
    if (r_int(&r, fid, "format_version", INT64_MIN, INT64_MAX, &ver) < 0) goto fail;
    if (ver != CKPT_FORMAT_VERSION) {
        errf(err, cap, "%s: attribute 'format_version' of / is %lld; this rft reads version %d", path, (long long)ver,
             CKPT_FORMAT_VERSION);
        goto fail;
    }
    for (size_t i = 0; i < N_CFG_FIELDS; i++) {
        const cfg_field *fd = &CFG_FIELDS[i];
        char *p = (char *)&f->cfg + fd->off;
        if (fd->is_float) {
            double v;
            if (r_real(&r, fid, fd->name, fd->lo, fd->hi, 0, &v) < 0) goto fail;
            *(float *)p = (float)v;
        } else {
            int64_t v;
            if (r_int(&r, fid, fd->name, (int64_t)fd->lo, (int64_t)fd->hi, &v) < 0) goto fail;
            *(int *)p = (int)v;
        }
    }
    char cerr[300];
    if (ckpt_check_config(&f->cfg, cerr, sizeof cerr) < 0) {
        errf(err, cap, "%s: %s", path, cerr);
        goto fail;
    }
    int h = r_has_group(&r, fid, "model");
    if (h <= 0) {
        if (h == 0) errf(err, cap, "%s: group /model is missing", path);
        goto fail;
    }
    if ((f->has_optim = r_has_group(&r, fid, "optimizer")) < 0) goto fail;
    if ((f->has_train = r_has_group(&r, fid, "trainer")) < 0) goto fail;
    if ((f->has_tok = r_has_group(&r, fid, "tokenizer")) < 0) goto fail;
    return f;
fail:
    ckpt_close(f);
    return NULL;
}

void ckpt_close(ckpt_file *f) {
    if (!f) return;
    if (f->fid >= 0) H5Fclose(f->fid);
    free(f->path);
    free(f);
}

const char *ckpt_path(const ckpt_file *f) { return f->path; }
const model_config *ckpt_config(const ckpt_file *f) { return &f->cfg; }
int ckpt_has_optim(const ckpt_file *f) { return f->has_optim; }
int ckpt_has_train_state(const ckpt_file *f) { return f->has_train; }
int ckpt_has_tokenizer(const ckpt_file *f) { return f->has_tok; }
hid_t ckpt_hid(const ckpt_file *f) { return f->fid; }

int ckpt_read_config(const char *path, model_config *cfg, char *err, size_t cap) {
    ckpt_file *f = ckpt_open(path, err, cap);
    if (!f) return -1;
    *cfg = f->cfg;
    ckpt_close(f);
    return 0;
}

/* every architecture field must match; max_seq is a usage limit (no tensor
 * depends on it), so a model may be created with another one */
static int cfg_matches(const ckpt_file *f, const model_config *mc, char *err, size_t cap) {
    for (size_t i = 0; i < N_CFG_FIELDS; i++) {
        if (CFG_FIELDS[i].off == offsetof(model_config, max_seq)) continue;
        double a = cfg_get(mc, &CFG_FIELDS[i]), b = cfg_get(&f->cfg, &CFG_FIELDS[i]);
        if (a != b)
            return errf(err, cap, "%s: the model's %s = %g differs from the checkpoint's %g", f->path, CFG_FIELDS[i].name, a, b);
    }
    return 0;
}

/* opens dataset gname/name and checks float32 with the given shape; `label`
 * names it in messages ("tensor X", "optimizer m of X") */
static hid_t r_tensor_open(const ckpt_file *f, hid_t g, const char *name, const char *label, int ndim, const int64_t *shape,
                           char *err, size_t cap) {
    char d[200], ts[32];
    htri_t ex = H5Lexists(g, name, H5P_DEFAULT);
    if (ex <= 0) {
        if (ex < 0) errf(err, cap, "%s: %s cannot be looked up: %s", f->path, label, h5_detail(d));
        else errf(err, cap, "%s: %s is missing", f->path, label);
        return -1;
    }
    hid_t did = H5Oopen(g, name, H5P_DEFAULT);
    if (did < 0) {
        errf(err, cap, "%s: %s cannot be opened: %s", f->path, label, h5_detail(d));
        return -1;
    }
    if (H5Iget_type(did) != H5I_DATASET) {
        h5_close(did);
        errf(err, cap, "%s: %s is not a dataset", f->path, label);
        return -1;
    }
    hid_t tid = H5Dget_type(did);
    if (tid < 0 || H5Tget_class(tid) != H5T_FLOAT || H5Tget_size(tid) != 4) {
        if (tid >= 0) type_str(tid, ts, sizeof ts);
        else snprintf(ts, sizeof ts, "unknown");
        h5_close(tid);
        H5Dclose(did);
        errf(err, cap, "%s: %s has dtype %s, expected float32", f->path, label, ts);
        return -1;
    }
    H5Tclose(tid);
    hid_t sid = H5Dget_space(did);
    int rank = sid < 0 ? -1 : H5Sget_simple_extent_ndims(sid);
    hsize_t dims[H5S_MAX_RANK];
    int ok = rank >= 0 && rank <= H5S_MAX_RANK && H5Sget_simple_extent_dims(sid, dims, NULL) == rank;
    h5_close(sid);
    if (!ok) {
        H5Dclose(did);
        errf(err, cap, "%s: %s has an unreadable shape: %s", f->path, label, h5_detail(d));
        return -1;
    }
    int same = rank == ndim;
    for (int i = 0; same && i < rank; i++) same = dims[i] == (hsize_t)shape[i];
    if (!same) {
        char got[96], want[64];
        int64_t g64[H5S_MAX_RANK];
        for (int i = 0; i < rank; i++) g64[i] = (int64_t)dims[i];
        shape_str(got, sizeof got, rank, g64);
        shape_str(want, sizeof want, ndim, shape);
        H5Dclose(did);
        errf(err, cap, "%s: %s has shape %s, expected %s", f->path, label, got, want);
        return -1;
    }
    return did;
}

typedef struct extra_ctx {
    const model *m;
    char first[128];
    int n;
} extra_ctx;

static herr_t extra_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    extra_ctx *x = data;
    int i = model_find_tensor(x->m, name);
    if (i < 0 || is_tied_head(&x->m->cfg, name)) {
        if (!x->n++) snprintf(x->first, sizeof x->first, "%s", name);
    }
    return 0;
}

/* checks the group holds no names beyond m's table */
static int r_no_extras(const ckpt_file *f, hid_t g, const char *gname, const model *m, char *err, size_t cap) {
    char d[200];
    extra_ctx x = {.m = m};
    hsize_t idx = 0;
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, extra_cb, &x) < 0)
        return errf(err, cap, "%s: cannot list %s: %s", f->path, gname, h5_detail(d));
    if (x.n) {
        const char *why = is_tied_head(&m->cfg, x.first) ? " (tie_embeddings = 1: the LM head is embed_tokens)" : "";
        return errf(err, cap, "%s: %s has %d unexpected entr%s, first '%s'%s", f->path, gname, x.n, x.n == 1 ? "y" : "ies",
                    x.first, why);
    }
    return 0;
}

/* checks every tensor of m's table in group g: metadata of all first, then
 * the values (finite; nonneg: also >= 0, for second moments), copied into
 * device buffer dst unless dst == NULL (check only). */
static int r_tensors(const ckpt_file *f, hid_t g, const char *gname, const char *what, const model *m, float *dst,
                     int nonneg, char *err, size_t cap) {
    char d[200], label[200];
    if (r_no_extras(f, g, gname, m, err, cap) < 0) return -1;
    /* pass 1: metadata of everything; pass 2: data */
    for (int pass = 0; pass < 2; pass++) {
        float *host = NULL;
        if (pass == 1 && !(host = xmalloc(max_numel(m) * sizeof(float), err, cap))) return -1;
        for (int i = 0; i < m->n_tensors; i++) {
            const model_tensor *t = &m->tensors[i];
            if (is_tied_head(&m->cfg, t->name)) continue;
            snprintf(label, sizeof label, "%s%s", what, t->name);
            hid_t did = r_tensor_open(f, g, t->name, label, t->ndim, t->shape, err, cap);
            if (did < 0) {
                free(host);
                return -1;
            }
            if (pass == 1) {
                herr_t rc = H5Dread(did, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host);
                if (rc < 0) {
                    H5Dclose(did);
                    free(host);
                    return errf(err, cap, "%s: %s cannot be read: %s", f->path, label, h5_detail(d));
                }
                for (size_t j = 0; j < t->numel; j++) {
                    if (!isfinite(host[j]) || (nonneg && host[j] < 0)) {
                        H5Dclose(did);
                        double v = host[j];
                        free(host);
                        return errf(err, cap, "%s: %s holds %s value %g at index %zu", f->path, label,
                                    isfinite(v) ? "a negative" : "a non-finite", v, j);
                    }
                }
                if (dst) m->be->copy_h2d(m->be, dst + t->offset, host, t->numel * sizeof(float));
            }
            H5Dclose(did);
        }
        free(host);
    }
    if (dst && m->be->sync(m->be) != 0) return errf(err, cap, "%s: copying %s to the device: %s", f->path, gname, m->be->err);
    return 0;
}

int ckpt_load_model(ckpt_file *f, model *m, char *err, size_t cap) {
    h5_quiet();
    char d[200];
    if (cfg_matches(f, &m->cfg, err, cap) < 0) return -1;
    hid_t g = H5Gopen2(f->fid, "model", H5P_DEFAULT);
    if (g < 0) return errf(err, cap, "%s: cannot open /model: %s", f->path, h5_detail(d));
    int rc = r_tensors(f, g, "/model", "tensor ", m, m->params, 0, err, cap);
    H5Gclose(g);
    return rc;
}

int ckpt_read_optim_config(ckpt_file *f, optim_config *c, char *err, size_t cap) {
    h5_quiet();
    char d[200];
    if (!f->has_optim) return errf(err, cap, "%s: no /optimizer group (not a training checkpoint)", f->path);
    hid_t g = H5Gopen2(f->fid, "optimizer", H5P_DEFAULT);
    if (g < 0) return errf(err, cap, "%s: cannot open /optimizer: %s", f->path, h5_detail(d));
    rd r = {f->path, "/optimizer", err, cap};
    double lr, b1, b2, eps, wd, gc, mlr;
    int64_t warm, total;
    optim_config out = {0};
    int rc = -1;
    if (r_real(&r, g, "lr", 0, 1e3, 0, &lr) < 0 || r_real(&r, g, "beta1", 0, 1 - 1e-12, 0, &b1) < 0 ||
        r_real(&r, g, "beta2", 0, 1 - 1e-12, 0, &b2) < 0 || r_real(&r, g, "eps", 1e-30, 1, 0, &eps) < 0 ||
        r_real(&r, g, "weight_decay", 0, 1e3, 0, &wd) < 0 || r_real(&r, g, "grad_clip", -1e30, 1e30, 0, &gc) < 0 ||
        r_real(&r, g, "min_lr_ratio", 0, 1, 0, &mlr) < 0 || r_int(&r, g, "warmup_steps", 0, INT_MAX, &warm) < 0 ||
        r_int(&r, g, "total_steps", 0, INT_MAX, &total) < 0)
        goto out;
    hid_t aid = r_attr_open(&r, g, "schedule");
    if (aid < 0) goto out;
    char *s = r_string(&r, aid, 1, "attribute 'schedule' of /optimizer");
    H5Aclose(aid);
    if (!s) goto out;
    if (!strcmp(s, "constant")) out.schedule = LR_CONSTANT;
    else if (!strcmp(s, "linear")) out.schedule = LR_LINEAR;
    else if (!strcmp(s, "cosine")) out.schedule = LR_COSINE;
    else {
        errf(err, cap, "%s: attribute 'schedule' of /optimizer is '%.40s', expected constant, linear or cosine", f->path, s);
        free(s);
        goto out;
    }
    free(s);
    out.lr = (float)lr, out.beta1 = (float)b1, out.beta2 = (float)b2, out.eps = (float)eps;
    out.weight_decay = (float)wd, out.grad_clip = (float)gc, out.min_lr_ratio = (float)mlr;
    out.warmup_steps = (int)warm, out.total_steps = (int)total;
    *c = out;
    rc = 0;
out:
    H5Gclose(g);
    return rc;
}

/* checks /optimizer against model m; loads m and v into mom/var when given */
static int r_optim(ckpt_file *f, const model *m, float *mom, float *var, int *step_out, char *err, size_t cap) {
    h5_quiet();
    char d[200];
    if (!f->has_optim) return errf(err, cap, "%s: no /optimizer group (not a training checkpoint)", f->path);
    if (cfg_matches(f, &m->cfg, err, cap) < 0) return -1;
    optim_config stored;
    if (ckpt_read_optim_config(f, &stored, err, cap) < 0) return -1; /* validates the attributes */
    hid_t g = H5Gopen2(f->fid, "optimizer", H5P_DEFAULT);
    if (g < 0) return errf(err, cap, "%s: cannot open /optimizer: %s", f->path, h5_detail(d));
    rd r = {f->path, "/optimizer", err, cap};
    int64_t step;
    int rc = r_int(&r, g, "step", 0, INT_MAX, &step);
    const char *names[2] = {"m", "v"};
    float *bufs[2] = {mom, var};
    for (int k = 0; !rc && k < 2; k++) {
        char gname[32], what[32];
        snprintf(gname, sizeof gname, "/optimizer/%s", names[k]);
        snprintf(what, sizeof what, "optimizer %s of ", names[k]);
        int h = r_has_group(&r, g, names[k]);
        if (h <= 0) {
            if (h == 0) errf(err, cap, "%s: group %s is missing", f->path, gname);
            rc = -1;
            break;
        }
        hid_t s = H5Gopen2(g, names[k], H5P_DEFAULT);
        if (s < 0) {
            rc = errf(err, cap, "%s: cannot open %s: %s", f->path, gname, h5_detail(d));
            break;
        }
        rc = r_tensors(f, s, gname, what, m, bufs[k], k == 1, err, cap);
        H5Gclose(s);
    }
    H5Gclose(g);
    if (!rc && step_out) *step_out = (int)step;
    return rc;
}

int ckpt_load_optim(ckpt_file *f, optim *o, char *err, size_t cap) {
    if (!o->m || !o->mom || !o->var) return errf(err, cap, "%s: optimizer not created", f->path);
    return r_optim(f, o->m, o->mom, o->var, &o->step, err, cap);
}

int ckpt_check_optim(ckpt_file *f, const model *m, int *step, char *err, size_t cap) {
    return r_optim(f, m, NULL, NULL, step, err, cap);
}

int ckpt_check_model(ckpt_file *f, const model *m, char *err, size_t cap) {
    h5_quiet();
    char d[200];
    if (cfg_matches(f, &m->cfg, err, cap) < 0) return -1;
    hid_t g = H5Gopen2(f->fid, "model", H5P_DEFAULT);
    if (g < 0) return errf(err, cap, "%s: cannot open /model: %s", f->path, h5_detail(d));
    int rc = r_tensors(f, g, "/model", "tensor ", m, NULL, 0, err, cap);
    H5Gclose(g);
    return rc;
}

typedef struct scalars_ctx {
    ckpt_train_state *ts;
    const rd *r;
    int failed;
} scalars_ctx;

static herr_t scalars_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    scalars_ctx *x = data;
    if (!scalar_name_ok(name)) {
        errf(x->r->err, x->r->cap, "%s: attribute '%.60s' of %s is not a valid scalar name", x->r->path, name, x->r->obj);
        x->failed = 1;
        return 1;
    }
    if (x->ts->n_scalars >= CKPT_MAX_SCALARS) {
        errf(x->r->err, x->r->cap, "%s: %s holds more than %d scalars", x->r->path, x->r->obj, CKPT_MAX_SCALARS);
        x->failed = 1;
        return 1;
    }
    ckpt_scalar *s = &x->ts->scalars[x->ts->n_scalars];
    if (r_num(x->r, loc, name, 0, &s->value) < 0) {
        x->failed = 1;
        return 1;
    }
    snprintf(s->name, sizeof s->name, "%s", name);
    x->ts->n_scalars++;
    return 0;
}

int ckpt_load_train_state(ckpt_file *f, ckpt_train_state *ts, char *err, size_t cap) {
    h5_quiet();
    char d[200], ts_[32];
    memset(ts, 0, sizeof *ts);
    if (!f->has_train) return errf(err, cap, "%s: no /trainer group (not a training checkpoint)", f->path);
    hid_t g = H5Gopen2(f->fid, "trainer", H5P_DEFAULT);
    if (g < 0) return errf(err, cap, "%s: cannot open /trainer: %s", f->path, h5_detail(d));
    rd r = {f->path, "/trainer", err, cap};
    int rc = -1;
    hid_t did = -1, s = -1;
    if (r_int(&r, g, "step", 0, INT64_MAX, &ts->step) < 0 || r_int(&r, g, "epoch", 0, INT64_MAX, &ts->epoch) < 0 ||
        r_int(&r, g, "cursor", 0, INT64_MAX, &ts->cursor) < 0 || r_u64(&r, g, "seed", &ts->seed) < 0 ||
        r_u64(&r, g, "rng_counter", &ts->rng_counter) < 0 ||
        r_real(&r, g, "best_valid_reward", -HUGE_VAL, HUGE_VAL, 1, &ts->best_valid_reward) < 0 ||
        r_int(&r, g, "best_step", -1, INT64_MAX, &ts->best_step) < 0 ||
        r_real(&r, g, "wall_seconds", 0, HUGE_VAL, 0, &ts->wall_seconds) < 0)
        goto out;
    htri_t ex = H5Lexists(g, "config_text", H5P_DEFAULT);
    if (ex < 0) {
        errf(err, cap, "%s: cannot look up /trainer/config_text: %s", f->path, h5_detail(d));
        goto out;
    }
    if (ex) {
        did = H5Dopen2(g, "config_text", H5P_DEFAULT);
        if (did < 0) {
            errf(err, cap, "%s: dataset /trainer/config_text cannot be opened: %s", f->path, h5_detail(d));
            goto out;
        }
        if (!(ts->config_text = r_string(&r, did, 0, "dataset /trainer/config_text"))) goto out;
        H5Dclose(did);
        did = -1;
    }
    if ((ex = H5Lexists(g, "data_order", H5P_DEFAULT)) < 0) {
        errf(err, cap, "%s: cannot look up /trainer/data_order: %s", f->path, h5_detail(d));
        goto out;
    }
    if (ex) {
        did = H5Dopen2(g, "data_order", H5P_DEFAULT);
        if (did < 0) {
            errf(err, cap, "%s: dataset /trainer/data_order cannot be opened: %s", f->path, h5_detail(d));
            goto out;
        }
        hid_t tid = H5Dget_type(did);
        if (tid < 0 || H5Tget_class(tid) != H5T_INTEGER || H5Tget_size(tid) > 8) {
            snprintf(ts_, sizeof ts_, "unknown");
            if (tid >= 0) type_str(tid, ts_, sizeof ts_);
            h5_close(tid);
            errf(err, cap, "%s: dataset /trainer/data_order has dtype %s, expected int32", f->path, ts_);
            goto out;
        }
        H5Tclose(tid);
        hid_t sid = H5Dget_space(did);
        int rank = sid < 0 ? -1 : H5Sget_simple_extent_ndims(sid);
        hsize_t n = 0;
        if (rank == 1) H5Sget_simple_extent_dims(sid, &n, NULL);
        h5_close(sid);
        if (rank != 1 || n > (hsize_t)INT32_MAX) {
            errf(err, cap, "%s: dataset /trainer/data_order must be 1-D with at most 2^31 entries", f->path);
            goto out;
        }
        ts->n_order = (int64_t)n;
        if (!(ts->data_order = xmalloc(n * sizeof(int32_t), err, cap))) goto out;
        if (n && H5Dread(did, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ts->data_order) < 0) {
            errf(err, cap, "%s: dataset /trainer/data_order cannot be read: %s", f->path, h5_detail(d));
            goto out;
        }
        for (hsize_t i = 0; i < n; i++)
            if (ts->data_order[i] < 0) {
                errf(err, cap, "%s: dataset /trainer/data_order[%llu] = %d is negative", f->path, (unsigned long long)i,
                     ts->data_order[i]);
                goto out;
            }
        H5Dclose(did);
        did = -1;
    }
    int h = r_has_group(&r, g, "scalars");
    if (h < 0) goto out;
    if (h) {
        s = H5Gopen2(g, "scalars", H5P_DEFAULT);
        if (s < 0) {
            errf(err, cap, "%s: cannot open /trainer/scalars: %s", f->path, h5_detail(d));
            goto out;
        }
        rd rs = {f->path, "/trainer/scalars", err, cap};
        scalars_ctx x = {ts, &rs, 0};
        hsize_t idx = 0;
        if (H5Aiterate2(s, H5_INDEX_NAME, H5_ITER_INC, &idx, scalars_cb, &x) < 0 || x.failed) {
            if (!x.failed) errf(err, cap, "%s: cannot list /trainer/scalars: %s", f->path, h5_detail(d));
            goto out;
        }
    }
    rc = 0;
out:
    h5_close(s);
    h5_close(did);
    H5Gclose(g);
    if (rc) ckpt_train_state_free(ts);
    return rc;
}

void ckpt_train_state_free(ckpt_train_state *ts) {
    if (!ts) return;
    free(ts->config_text);
    free(ts->data_order);
    ts->config_text = NULL;
    ts->data_order = NULL;
    ts->n_order = 0;
}

int ckpt_load_tokenizer(ckpt_file *f, ckpt_tokenizer_load_fn load, void *tok, char *err, size_t cap) {
    h5_quiet();
    char d[200];
    if (!f->has_tok) return errf(err, cap, "%s: no /tokenizer group", f->path);
    hid_t g = H5Gopen2(f->fid, "tokenizer", H5P_DEFAULT);
    if (g < 0) return errf(err, cap, "%s: cannot open /tokenizer: %s", f->path, h5_detail(d));
    char terr[400] = "";
    int rc = load(g, tok, terr, sizeof terr);
    H5Gclose(g);
    if (rc != 0) return errf(err, cap, "%s: tokenizer: %s", f->path, terr[0] ? terr : "load failed");
    return 0;
}
