/* trainer/tokenizer_h5.c: stores a tokenizer in, and rebuilds it from, the
 * /tokenizer group of a checkpoint (layout in tokenizer_h5.h). */
#include "tokenizer_h5.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define TOK_H5_VERSION 1
#define MAX_VOCAB (1 << 24)
#define MAX_BYTES ((int64_t)1 << 30)

/* ---------------------------------------------------------------- write */

static int w_dset(hid_t g, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                  const void *data, char *err, size_t cap) {
    hid_t sid = H5Screate_simple(rank, dims, NULL);
    if (sid < 0) return errf(err, cap, "dataspace for %s", name);
    hid_t did = H5Dcreate2(g, name, ftype, sid, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (did < 0) rc = errf(err, cap, "creating dataset %s", name);
    else if (dims[0] > 0 && H5Dwrite(did, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = errf(err, cap, "writing dataset %s", name);
    if (did >= 0) H5Dclose(did);
    H5Sclose(sid);
    return rc;
}

static int w_i32(hid_t g, const char *name, int32_t v, char *err, size_t cap) {
    hid_t sid = H5Screate(H5S_SCALAR);
    hid_t aid = H5Acreate2(g, name, H5T_STD_I32LE, sid, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (aid < 0 || H5Awrite(aid, H5T_NATIVE_INT32, &v) < 0) rc = errf(err, cap, "writing attribute %s", name);
    if (aid >= 0) H5Aclose(aid);
    H5Sclose(sid);
    return rc;
}

static int w_str(hid_t g, const char *name, const char *s, char *err, size_t cap) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(s) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sid = H5Screate(H5S_SCALAR);
    hid_t aid = H5Acreate2(g, name, t, sid, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (aid < 0 || H5Awrite(aid, t, s) < 0) rc = errf(err, cap, "writing attribute %s", name);
    if (aid >= 0) H5Aclose(aid);
    H5Sclose(sid);
    H5Tclose(t);
    return rc;
}

int tokenizer_h5_save(hid_t g, const void *tokp, char *err, size_t cap) {
    const tokenizer *t = tokp;
    int32_t nv = tokenizer_vocab_size(t), nm = tokenizer_n_merges(t);
    int rc = -1;
    size_t total = 0;
    for (int32_t i = 0; i < nv; i++) {
        size_t l;
        tokenizer_id_to_token(t, i, &l);
        total += l;
    }
    uint8_t *bytes = malloc(total + 1);
    int64_t *off = malloc(((size_t)nv + 1) * sizeof(int64_t));
    int32_t *types = malloc((size_t)nv * sizeof(int32_t));
    int32_t *merges = malloc(((size_t)nm * 2 + 1) * sizeof(int32_t));
    if (!bytes || !off || !types || !merges) { errf(err, cap, "out of memory"); goto done; }
    size_t o = 0;
    for (int32_t i = 0; i < nv; i++) {
        size_t l;
        const char *s = tokenizer_id_to_token(t, i, &l);
        off[i] = (int64_t)o;
        memcpy(bytes + o, s, l);
        o += l;
        types[i] = tokenizer_token_type(t, i);
    }
    off[nv] = (int64_t)o;
    for (int32_t i = 0; i < nm; i++) tokenizer_merge(t, i, &merges[2 * i], &merges[2 * i + 1]);
    hsize_t d1[1], d2[2];
    if (w_i32(g, "format_version", TOK_H5_VERSION, err, cap) || w_str(g, "pretokenizer", tokenizer_pretokenizer(t), err, cap) ||
        w_i32(g, "ignore_merges", tokenizer_ignore_merges(t), err, cap) || w_i32(g, "add_bos", tokenizer_add_bos(t), err, cap) ||
        w_i32(g, "bos_id", tokenizer_bos_id(t), err, cap) || w_i32(g, "eos_id", tokenizer_eos_id(t), err, cap) ||
        w_i32(g, "pad_id", tokenizer_pad_id(t), err, cap) || w_i32(g, "unk_id", tokenizer_unk_id(t), err, cap) ||
        w_str(g, "chat_template_name", tokenizer_chat_template_name(t), err, cap) ||
        w_str(g, "normalizer", tokenizer_normalizer(t), err, cap))
        goto done;
    d1[0] = total;
    if (w_dset(g, "vocab_bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, d1, bytes, err, cap)) goto done;
    d1[0] = (hsize_t)nv + 1;
    if (w_dset(g, "vocab_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d1, off, err, cap)) goto done;
    d1[0] = (hsize_t)nv;
    if (w_dset(g, "token_types", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, d1, types, err, cap)) goto done;
    d2[0] = (hsize_t)nm; d2[1] = 2;
    if (w_dset(g, "merges", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d2, merges, err, cap)) goto done;
    const char *ct = tokenizer_chat_template_text(t);
    if (ct) {
        d1[0] = strlen(ct);
        if (w_dset(g, "chat_template", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, d1, ct, err, cap)) goto done;
    }
    const char *const *rx;
    int nrx = tokenizer_pre_regex(t, &rx);
    if (nrx > 0) {
        size_t rt = 0;
        for (int i = 0; i < nrx; i++) rt += strlen(rx[i]);
        char *rb = malloc(rt + 1);
        int64_t ro[TOK_MAX_PRE_STEPS + 1];
        if (!rb) { errf(err, cap, "out of memory"); goto done; }
        size_t p = 0;
        for (int i = 0; i < nrx; i++) { ro[i] = (int64_t)p; memcpy(rb + p, rx[i], strlen(rx[i])); p += strlen(rx[i]); }
        ro[nrx] = (int64_t)p;
        d1[0] = rt;
        int e1 = w_dset(g, "pre_regex_bytes", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, d1, rb, err, cap);
        free(rb);
        if (e1) goto done;
        d1[0] = (hsize_t)nrx + 1;
        if (w_dset(g, "pre_regex_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, d1, ro, err, cap)) goto done;
    }
    rc = 0;
done:
    free(bytes); free(off); free(types); free(merges);
    return rc;
}

/* ---------------------------------------------------------------- read */

static int r_i32(hid_t g, const char *name, int32_t *v, char *err, size_t cap) {
    if (H5Aexists(g, name) <= 0) return errf(err, cap, "missing attribute %s", name);
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    if (a < 0) return errf(err, cap, "cannot open attribute %s", name);
    hid_t s = H5Aget_space(a), ty = H5Aget_type(a);
    int ok = H5Tget_class(ty) == H5T_INTEGER && H5Sget_simple_extent_npoints(s) == 1;
    int rc = 0;
    if (!ok) rc = errf(err, cap, "attribute %s: expected one integer", name);
    else if (H5Aread(a, H5T_NATIVE_INT32, v) < 0) rc = errf(err, cap, "reading attribute %s", name);
    H5Tclose(ty); H5Sclose(s); H5Aclose(a);
    return rc;
}

static int r_str(hid_t g, const char *name, char *out, size_t outcap, char *err, size_t cap) {
    if (H5Aexists(g, name) <= 0) return errf(err, cap, "missing attribute %s", name);
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    if (a < 0) return errf(err, cap, "cannot open attribute %s", name);
    hid_t ty = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(ty) != H5T_STRING || H5Tis_variable_str(ty) > 0 || H5Tget_size(ty) >= outcap) {
        rc = errf(err, cap, "attribute %s: expected a fixed-length string under %zu bytes", name, outcap);
    } else {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, outcap);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        H5Tset_cset(mt, H5Tget_cset(ty));
        memset(out, 0, outcap);
        if (H5Aread(a, mt, out) < 0) rc = errf(err, cap, "reading attribute %s", name);
        out[outcap - 1] = 0;
        H5Tclose(mt);
    }
    H5Tclose(ty); H5Aclose(a);
    return rc;
}

/* reads an integer dataset of rank `rank` (second dim must be dim1 when rank 2)
   into a new buffer of mtype; *n = first dimension */
static void *r_dset(hid_t g, const char *name, int rank, hsize_t dim1, hid_t mtype, size_t esz, int64_t maxn,
                    int64_t *n, char *err, size_t cap) {
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) return errf(err, cap, "missing dataset %s", name), NULL;
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return errf(err, cap, "cannot open dataset %s", name), NULL;
    hid_t s = H5Dget_space(d), ty = H5Dget_type(d);
    hsize_t dims[2] = {0, 0};
    void *buf = NULL;
    int r = H5Sget_simple_extent_ndims(s);
    if (H5Tget_class(ty) != H5T_INTEGER || r != rank) {
        errf(err, cap, "dataset %s: expected an integer array of rank %d", name, rank);
        goto out;
    }
    H5Sget_simple_extent_dims(s, dims, NULL);
    if ((int64_t)dims[0] > maxn || (rank == 2 && dims[1] != dim1)) {
        errf(err, cap, "dataset %s: shape [%llu%s] out of range", name, (unsigned long long)dims[0], rank == 2 ? ", ?" : "");
        goto out;
    }
    size_t cnt = (size_t)dims[0] * (rank == 2 ? (size_t)dim1 : 1);
    if (!(buf = xmalloc(cnt * esz + 1, err, cap))) goto out;
    if (cnt > 0 && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        errf(err, cap, "reading dataset %s", name);
        free(buf);
        buf = NULL;
        goto out;
    }
    *n = (int64_t)dims[0];
out:
    H5Tclose(ty); H5Sclose(s); H5Dclose(d);
    return buf;
}

int tokenizer_h5_load(hid_t g, void *outp, char *err, size_t cap) {
    tokenizer **out = outp;
    int32_t ver, im, ab, bos, eos, pad, unk;
    char pre[32], chat_name[32], norm[16];
    *out = NULL;
    if (r_i32(g, "format_version", &ver, err, cap)) return -1;
    if (ver != TOK_H5_VERSION) return errf(err, cap, "format_version %d is not supported (%d)", ver, TOK_H5_VERSION);
    if (r_str(g, "pretokenizer", pre, sizeof pre, err, cap) || r_i32(g, "ignore_merges", &im, err, cap) ||
        r_i32(g, "add_bos", &ab, err, cap) || r_i32(g, "bos_id", &bos, err, cap) || r_i32(g, "eos_id", &eos, err, cap) ||
        r_i32(g, "pad_id", &pad, err, cap) || r_i32(g, "unk_id", &unk, err, cap) ||
        r_str(g, "chat_template_name", chat_name, sizeof chat_name, err, cap) ||
        r_str(g, "normalizer", norm, sizeof norm, err, cap))
        return -1;
    int64_t nb = 0, noff = 0, nty = 0, nm = 0, nct = 0, nrb = 0, nro = 0;
    uint8_t *bytes = NULL, *ct = NULL, *rb = NULL;
    int64_t *off = NULL, *ro = NULL;
    int32_t *types = NULL, *merges = NULL;
    const char **strs = NULL, **mp = NULL, *rx[TOK_MAX_PRE_STEPS];
    size_t *lens = NULL;
    char *rxs[TOK_MAX_PRE_STEPS] = {0};
    int nrx = 0, rc = -1;
    char *strbuf = NULL;
    if (!(bytes = r_dset(g, "vocab_bytes", 1, 0, H5T_NATIVE_UINT8, 1, MAX_BYTES, &nb, err, cap))) goto done;
    if (!(off = r_dset(g, "vocab_offsets", 1, 0, H5T_NATIVE_INT64, 8, MAX_VOCAB + 1, &noff, err, cap))) goto done;
    if (!(types = r_dset(g, "token_types", 1, 0, H5T_NATIVE_INT32, 4, MAX_VOCAB, &nty, err, cap))) goto done;
    if (!(merges = r_dset(g, "merges", 2, 2, H5T_NATIVE_INT32, 4, MAX_VOCAB, &nm, err, cap))) goto done;
    int64_t nv = nty;
    if (nv < 1 || noff != nv + 1) { errf(err, cap, "vocab_offsets has %lld entries, token_types %lld", (long long)noff, (long long)nty); goto done; }
    if (off[0] != 0 || off[nv] != nb) { errf(err, cap, "vocab_offsets do not span vocab_bytes"); goto done; }
    for (int64_t i = 0; i < nv; i++)
        if (off[i + 1] < off[i]) { errf(err, cap, "vocab_offsets decrease at token %lld", (long long)i); goto done; }
    /* NUL-terminated copies of the strings (merge sides are passed as C strings) */
    strs = calloc((size_t)nv, sizeof *strs);
    lens = calloc((size_t)nv, sizeof *lens);
    strbuf = malloc((size_t)nb + (size_t)nv);
    mp = calloc(2 * (size_t)nm + 1, sizeof *mp);
    if (!strs || !lens || !strbuf || !mp) { errf(err, cap, "out of memory"); goto done; }
    size_t p = 0;
    for (int64_t i = 0; i < nv; i++) {
        size_t l = (size_t)(off[i + 1] - off[i]);
        memcpy(strbuf + p, bytes + off[i], l);
        strbuf[p + l] = 0;
        strs[i] = strbuf + p;
        lens[i] = l;
        p += l + 1;
    }
    for (int64_t i = 0; i < nm; i++) {
        for (int k = 0; k < 2; k++) {
            int32_t id = merges[2 * i + k];
            if (id < 0 || id >= nv) { errf(err, cap, "merges[%lld] has token id %d out of range", (long long)i, id); goto done; }
            if (memchr(strs[id], 0, lens[id])) { errf(err, cap, "merges[%lld]: token %d holds a NUL byte", (long long)i, id); goto done; }
            mp[2 * i + k] = strs[id];
        }
    }
    if (H5Lexists(g, "chat_template", H5P_DEFAULT) > 0 &&
        !(ct = r_dset(g, "chat_template", 1, 0, H5T_NATIVE_UINT8, 1, 1 << 24, &nct, err, cap)))
        goto done;
    if (ct) {
        ct[nct] = 0;
        if (strlen((char *)ct) != (size_t)nct) { errf(err, cap, "chat_template holds a NUL byte"); goto done; }
    }
    if (!strcmp(pre, "custom")) {
        if (!(rb = r_dset(g, "pre_regex_bytes", 1, 0, H5T_NATIVE_UINT8, 1, 1 << 20, &nrb, err, cap))) goto done;
        if (!(ro = r_dset(g, "pre_regex_offsets", 1, 0, H5T_NATIVE_INT64, 8, TOK_MAX_PRE_STEPS + 1, &nro, err, cap))) goto done;
        nrx = (int)nro - 1;
        if (nrx < 1 || ro[0] != 0 || ro[nrx] != nrb) { errf(err, cap, "pre_regex_offsets are inconsistent"); goto done; }
        for (int i = 0; i < nrx; i++) {
            if (ro[i + 1] < ro[i]) { errf(err, cap, "pre_regex_offsets decrease"); goto done; }
            size_t l = (size_t)(ro[i + 1] - ro[i]);
            if (!(rxs[i] = malloc(l + 1))) { errf(err, cap, "out of memory"); goto done; }
            memcpy(rxs[i], rb + ro[i], l);
            rxs[i][l] = 0;
            rx[i] = rxs[i];
        }
    }
    tokenizer_spec sp;
    tokenizer_spec_init(&sp);
    sp.n_vocab = (int32_t)nv;
    sp.tokens = strs;
    sp.token_lens = lens;
    sp.token_types = types;
    sp.n_merges = (int32_t)nm;
    sp.merge_pairs = mp;
    sp.pretokenizer = pre;
    sp.pre_regex = rx;
    sp.n_pre_regex = nrx;
    sp.ignore_merges = im != 0;
    sp.normalizer = norm;
    sp.add_bos = ab != 0;
    sp.bos_id = bos; sp.eos_id = eos; sp.pad_id = pad; sp.unk_id = unk;
    sp.chat_template = (const char *)ct;
    tokenizer *t = tokenizer_create(&sp, err, cap);
    if (!t) goto done;
    if (tokenizer_set_chat_template(t, chat_name, err, cap)) { tokenizer_free(t); goto done; }
    *out = t;
    rc = 0;
done:
    free(bytes); free(off); free(types); free(merges); free(ct); free(rb); free(ro);
    free(strs); free(lens); free(strbuf); free(mp);
    for (int i = 0; i < TOK_MAX_PRE_STEPS; i++) free(rxs[i]);
    return rc;
}
