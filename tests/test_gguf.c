/* tests/test_gguf.c: the GGUF reader and writer and the dequantisers against
 * fixtures made by tools/ref_gguf.py with the `gguf` PyPI package (llama.cpp's
 * gguf-py): every metadata type, v2 + custom alignment, dimension order,
 * dequantisation of every supported type equal to gguf.quants.dequantize,
 * writer output byte-identical to GGUFWriter's, and truncated / corrupted /
 * hostile files rejected with one error and no crash. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "quant.h"
#include "util.h"

#include "check.h"

static void test_metadata(const gguf_file *f) {
    char err[512];
    int64_t i;
    double d;
    int b;
    CHECK(f->version == 3, "version %u", f->version);
    CHECK(!strcmp(gguf_get_str(f, "general.architecture"), "test"), "arch");
    CHECK(gguf_get_int(f, "test.u8", &i, err, sizeof err) == 1 && i == 200, "u8");
    CHECK(gguf_get(f, "test.u8")->type == GGUF_TYPE_UINT8, "u8 type");
    CHECK(gguf_get_int(f, "test.i8", &i, err, sizeof err) == 1 && i == -100, "i8");
    CHECK(gguf_get_int(f, "test.u16", &i, err, sizeof err) == 1 && i == 60000, "u16");
    CHECK(gguf_get_int(f, "test.i16", &i, err, sizeof err) == 1 && i == -30000, "i16");
    CHECK(gguf_get_int(f, "test.u32", &i, err, sizeof err) == 1 && i == 4000000000LL, "u32");
    CHECK(gguf_get_int(f, "test.i32", &i, err, sizeof err) == 1 && i == -2000000000LL, "i32");
    CHECK(gguf_get_float(f, "test.f32", &d, err, sizeof err) == 1 && d == 0.15625, "f32");
    CHECK(gguf_get(f, "test.u64")->v.u == 18000000000000000000ULL, "u64");
    CHECK(gguf_get_int(f, "test.u64", &i, err, sizeof err) == -1 && strstr(err, "test.u64"), "u64 > INT64_MAX is an error");
    CHECK(gguf_get_int(f, "test.i64", &i, err, sizeof err) == 1 && i == -9000000000000000000LL, "i64");
    CHECK(gguf_get_float(f, "test.f64", &d, err, sizeof err) == 1 && d == -2.5e-300, "f64");
    CHECK(gguf_get_bool(f, "test.bool_t", &b, err, sizeof err) == 1 && b == 1, "bool t");
    CHECK(gguf_get_bool(f, "test.bool_f", &b, err, sizeof err) == 1 && b == 0, "bool f");
    CHECK(gguf_get_bool(f, "test.i8", &b, err, sizeof err) == -1, "bool of an int is an error");
    CHECK(gguf_get_int(f, "test.absent", &i, err, sizeof err) == 0, "absent");
    CHECK(!strcmp(gguf_get_str(f, "test.str"), "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93"), "str");
    const gguf_kv *kv = gguf_get(f, "test.arr_i32");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_INT32 && kv->n == 5, "arr_i32");
    if (kv && kv->n == 5)
        for (int k = 0; k < 5; k++) CHECK(gguf_arr_i64(kv, k) == (k % 2 ? -(k + 1) : k + 1), "arr_i32[%d]", k);
    kv = gguf_get(f, "test.arr_f32");
    CHECK(kv && kv->arr_type == GGUF_TYPE_FLOAT32 && kv->n == 3 && gguf_arr_f64(kv, 1) == -1.25, "arr_f32");
    kv = gguf_get(f, "test.arr_u8");
    CHECK(kv && kv->arr_type == GGUF_TYPE_UINT8 && kv->n == 3 && gguf_arr_i64(kv, 1) == 255, "arr_u8");
    kv = gguf_get(f, "test.arr_bool");
    CHECK(kv && kv->arr_type == GGUF_TYPE_BOOL && kv->n == 3 && gguf_arr_i64(kv, 0) == 1 && gguf_arr_i64(kv, 1) == 0, "arr_bool");
    kv = gguf_get(f, "test.arr_str");
    const char *want[] = {"a", "", "\xc4\xa0the", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "<|im_end|>"};
    CHECK(kv && kv->arr_type == GGUF_TYPE_STRING && kv->n == 5, "arr_str");
    if (kv && kv->n == 5)
        for (int k = 0; k < 5; k++)
            CHECK(!strcmp(kv->strs[k], want[k]) && kv->str_lens[k] == strlen(want[k]), "arr_str[%d]", k);
}

static void test_dequant(const gguf_file *f) {
    static const char *types[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"};
    char err[512], name[64];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        snprintf(name, sizeof name, "q_%s", types[k]);
        const gguf_tensor *q = gguf_find_tensor(f, name);
        snprintf(name, sizeof name, "ref_%s", types[k]);
        const gguf_tensor *r = gguf_find_tensor(f, name);
        CHECK(q && r, "tensors for %s", types[k]);
        if (!q || !r) continue;
        CHECK(!strcmp(ggml_type_name(q->type), types[k]), "type of q_%s is %s", types[k], ggml_type_name(q->type));
        CHECK(q->n_dims == 2 && q->ne[1] == 3 && q->ne[0] == r->ne[0] && r->type == GGML_TYPE_F32, "shape of %s", types[k]);
        size_t n = q->n_elems;
        float *out = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
        CHECK(gguf_tensor_to_f32(f, q, out, err, sizeof err) == 0, "%s", err);
        CHECK(gguf_tensor_to_f32(f, r, ref, err, sizeof err) == 0, "%s", err);
        size_t exact = 0;
        double maxd = 0;
        for (size_t j = 0; j < n; j++) {
            if (memcmp(&out[j], &ref[j], 4) == 0) exact++;
            double dd = fabs((double)out[j] - ref[j]) / fmax(1e-30, fabs(ref[j]));
            if (out[j] != ref[j] && dd > maxd) maxd = dd;
        }
        /* same formulas in fp32: bitwise equal; a fused multiply-add may move the last bit */
        CHECK(maxd < 1e-6, "%s: max relative difference %.3g vs gguf.quants", types[k], maxd);
        printf("dequant %-5s %zu/%zu bitwise equal to gguf.quants, max rel diff %.2g\n", types[k], exact, n, maxd);
        free(out);
        free(ref);
    }
    const gguf_tensor *c = gguf_find_tensor(f, "cube");
    CHECK(c && c->n_dims == 3 && c->ne[0] == 32 && c->ne[1] == 3 && c->ne[2] == 2, "cube dims (ne reversed from numpy)");
    if (c) {
        float v[192];
        gguf_tensor_to_f32(f, c, v, err, sizeof err);
        CHECK(v[0] == 0 && v[33] == 33 && v[191] == 191, "cube values");
    }
}

static void test_v2(void) {
    gguf_file f;
    char err[512];
    CHECK(gguf_open(&f, "tests/fixtures/gguf_v2_align64.gguf", err, sizeof err) == 0, "%s", err);
    CHECK(f.version == 2 && f.alignment == 64, "v2 version %u alignment %llu", f.version, (unsigned long long)f.alignment);
    CHECK(f.data_offset % 64 == 0, "data offset aligned");
    const gguf_tensor *a = gguf_find_tensor(&f, "a"), *b = gguf_find_tensor(&f, "b");
    CHECK(a && b && a->offset == 0 && b->offset == 64, "offsets");
    if (a && b) {
        float va[5], vb[7];
        gguf_tensor_to_f32(&f, a, va, err, sizeof err);
        gguf_tensor_to_f32(&f, b, vb, err, sizeof err);
        CHECK(va[4] == 4 && vb[6] == 3.0f && vb[1] == 0.5f, "values");
    }
    gguf_close(&f);
}

static void test_writer(void) {
    char err[512];
    const char *path = "build-test-gguf-writer.gguf";
    char tmpdir[256];
    snprintf(tmpdir, sizeof tmpdir, "%s/rft_test_gguf_%d.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", getpid());
    path = tmpdir;
    gguf_writer *w = gguf_writer_new();
    gguf_set_str(w, "general.architecture", "test");
    gguf_set_u32(w, "w.u32", 7);
    gguf_set_i32(w, "w.i32", -7);
    gguf_set_u64(w, "w.u64", 1ull << 40);
    gguf_set_f32(w, "w.f32", 1.5f);
    gguf_set_bool(w, "w.bool", 1);
    gguf_set_str(w, "w.str", "na\xc3\xafve");
    const char *strs[] = {"x", "", "yz"};
    gguf_set_arr_str(w, "w.arr_str", strs, NULL, 3);
    int32_t ai[] = {3, -1, 4};
    gguf_set_arr(w, "w.arr_i32", GGUF_TYPE_INT32, ai, 3);
    float af[] = {0.25f, -8.0f};
    gguf_set_arr(w, "w.arr_f32", GGUF_TYPE_FLOAT32, af, 2);
    float t32[15];
    for (int i = 0; i < 15; i++) t32[i] = i * 0.25f - 1;
    uint16_t t16[4], tb[64];
    for (int i = 0; i < 4; i++) t16[i] = fp32_to_fp16(i * 0.5f);
    for (int i = 0; i < 64; i++) tb[i] = fp32_to_bf16((i - 32) / 8.0f);
    CHECK(gguf_add_tensor(w, "t.f32", 2, (int64_t[]){5, 3}, GGML_TYPE_F32, t32, err, sizeof err) == 0, "%s", err);
    CHECK(gguf_add_tensor(w, "t.f16", 1, (int64_t[]){4}, GGML_TYPE_F16, t16, err, sizeof err) == 0, "%s", err);
    CHECK(gguf_add_tensor(w, "t.bf16", 2, (int64_t[]){32, 2}, GGML_TYPE_BF16, tb, err, sizeof err) == 0, "%s", err);
    CHECK(gguf_writer_write(w, path, err, sizeof err) == 0, "%s", err);
    gguf_writer_free(w);
    size_t n1, n2;
    char *a = read_file(path, &n1, err, sizeof err), *b = read_file("tests/fixtures/gguf_writer_ref.gguf", &n2, err, sizeof err);
    CHECK(a && b && n1 == n2 && !memcmp(a, b, n1), "writer output (%zu bytes) differs from GGUFWriter's (%zu bytes)", n1, n2);
    free(a);
    free(b);
    gguf_file f;
    CHECK(gguf_open(&f, path, err, sizeof err) == 0, "%s", err);
    const gguf_kv *kv = gguf_get(&f, "w.arr_str");
    CHECK(kv && kv->n == 3 && !strcmp(kv->strs[2], "yz"), "read back arr_str");
    gguf_close(&f);
    unlink(path);
}

/* every truncation and a sweep of single-byte corruptions must fail cleanly
   (or, for corruptions inside tensor data, parse) without crashing */
static void test_bad(void) {
    char err[512];
    size_t n;
    char *buf = read_file("tests/fixtures/gguf_types.gguf", &n, err, sizeof err);
    CHECK(buf != NULL, "%s", err);
    if (!buf) return;
    gguf_file f;
    size_t header_end = 0;
    CHECK(gguf_parse(&f, buf, n, "types", err, sizeof err) == 0, "%s", err);
    header_end = f.data_offset;
    gguf_close(&f);
    int ok_trunc = 0;
    for (size_t len = 0; len < n; len += (len < header_end ? 1 : 97)) {
        uint8_t *c = malloc(len ? len : 1);
        memcpy(c, buf, len);
        int r = gguf_parse(&f, c, len, "trunc.gguf", err, sizeof err);
        if (r == 0) gguf_close(&f);
        else ok_trunc += strncmp(err, "trunc.gguf: ", 12) == 0;
        CHECK(r != 0, "truncation to %zu bytes accepted", len);
        free(c);
    }
    printf("truncations rejected with a named error: %d\n", ok_trunc);
    uint8_t *c = malloc(n);
    int rejected = 0;
    for (size_t pos = 0; pos < header_end; pos++) {
        for (int v = 0; v < 3; v++) {
            memcpy(c, buf, n);
            static const uint8_t vals[] = {0xff, 0x00, 0x7f};
            if (c[pos] == vals[v]) continue;
            c[pos] = vals[v];
            if (gguf_parse(&f, c, n, "corrupt.gguf", err, sizeof err) == 0) {
                /* a parse that succeeds must still have every tensor inside the buffer */
                for (uint64_t t = 0; t < f.n_tensors; t++)
                    CHECK(f.tensors[t].data + f.tensors[t].nbytes <= c + n, "tensor past the end accepted");
                gguf_close(&f);
            } else {
                rejected++;
                CHECK(strchr(err, '\n') == NULL && strncmp(err, "corrupt.gguf: ", 14) == 0, "error format: %s", err);
            }
        }
    }
    printf("single-byte corruptions of the header rejected: %d\n", rejected);
    /* specific hostile headers */
    struct {
        uint64_t n_tensors, n_kv;
        const char *want;
    } hdr[] = {{1ull << 60, 0, "tensors"}, {0, 1ull << 60, "metadata keys"}};
    for (int k = 0; k < 2; k++) {
        uint8_t h[64] = "GGUF";
        uint32_t ver = 3;
        memcpy(h + 4, &ver, 4);
        memcpy(h + 8, &hdr[k].n_tensors, 8);
        memcpy(h + 16, &hdr[k].n_kv, 8);
        CHECK(gguf_parse(&f, h, sizeof h, "hostile.gguf", err, sizeof err) == -1 && strstr(err, hdr[k].want), "%s", err);
    }
    /* version 1 and a wrong magic */
    memcpy(c, buf, n);
    c[4] = 1;
    CHECK(gguf_parse(&f, c, n, "v1.gguf", err, sizeof err) == -1 && strstr(err, "version 1"), "%s", err);
    memcpy(c, buf, n);
    c[0] = 'X';
    CHECK(gguf_parse(&f, c, n, "magic.gguf", err, sizeof err) == -1 && strstr(err, "not a GGUF"), "%s", err);
    /* a tensor whose offset points past the end: bump the last tensor's data
       offset by editing the file through our writer */
    gguf_writer *w = gguf_writer_new();
    float z[32] = {0};
    gguf_add_tensor(w, "blk.0.attn_q.weight", 1, (int64_t[]){32}, GGML_TYPE_F32, z, err, sizeof err);
    char path[256];
    snprintf(path, sizeof path, "/tmp/rft_test_gguf_off_%d.gguf", getpid());
    gguf_writer_write(w, path, err, sizeof err);
    gguf_writer_free(w);
    size_t m;
    char *p = read_file(path, &m, err, sizeof err);
    unlink(path);
    if (p) {
        /* record: u64 len, name, u32 n_dims, u64 ne0, u32 type, u64 offset */
        size_t off_pos = 24 + 8 + strlen("blk.0.attn_q.weight") + 4 + 8 + 4;
        uint64_t big = 1ull << 20;
        memcpy(p + off_pos, &big, 8);
        CHECK(gguf_parse(&f, p, m, "past.gguf", err, sizeof err) == -1 && strstr(err, "blk.0.attn_q.weight") &&
                  strstr(err, "past the end"), "%s", err);
        big = 0;
        memcpy(p + off_pos, &big, 8);
        uint64_t ne = 1ull << 62;  /* absurd dimension */
        memcpy(p + off_pos - 12, &ne, 8);
        CHECK(gguf_parse(&f, p, m, "dims.gguf", err, sizeof err) == -1 && strstr(err, "blk.0.attn_q.weight"), "%s", err);
        ne = 32;
        memcpy(p + off_pos - 12, &ne, 8);
        uint32_t ty = 99;  /* unknown ggml type */
        memcpy(p + off_pos - 4, &ty, 4);
        CHECK(gguf_parse(&f, p, m, "type.gguf", err, sizeof err) == -1 && strstr(err, "unknown ggml type 99"), "%s", err);
        ty = GGML_TYPE_Q3_K;  /* known but not dequantisable: parse ok, dequant refuses */
        memcpy(p + off_pos - 4, &ty, 4);
        ne = 256;
        memcpy(p + off_pos - 12, &ne, 8);
        if (gguf_parse(&f, p, m, "q3k.gguf", err, sizeof err) == 0) {
            float out[256];
            CHECK(gguf_tensor_to_f32(&f, &f.tensors[0], out, err, sizeof err) == -1 && strstr(err, "Q3_K"), "%s", err);
            gguf_close(&f);
        } else {
            CHECK(strstr(err, "past the end") != NULL, "Q3_K record: %s", err);
        }
        free(p);
    }
    CHECK(gguf_open(&f, "tests/fixtures/does-not-exist.gguf", err, sizeof err) == -1 && strstr(err, "does-not-exist"), "%s", err);
    free(c);
    free(buf);
}

static void test_fp16(void) {
    /* exhaustive: half -> float -> half is the identity (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_fp32((uint16_t)h);
        uint16_t back = fp32_to_fp16(f);
        if (isnan(f)) CHECK((back & 0x7c00) == 0x7c00 && (back & 0x3ff), "nan %04x", h);
        else CHECK(back == h, "fp16 %04x -> %g -> %04x", h, f, back);
    }
    /* the row conversion (F16C when compiled in) agrees with the scalar one on every finite half */
    static uint16_t all[65536];
    static float row[65536];
    for (uint32_t h = 0; h < 65536; h++) all[h] = (uint16_t)h;
    fp16_to_fp32_row(all, row, 65536);
    int rbad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = fp16_to_fp32((uint16_t)h);
        rbad += isnan(f) ? !isnan(row[h]) : memcmp(&f, &row[h], 4) != 0;
    }
    CHECK(rbad == 0, "fp16 row conversion: %d halves differ", rbad);
    CHECK(fp32_to_fp16(65520.0f) == 0x7c00 && fp32_to_fp16(65519.0f) == 0x7bff, "fp16 overflow rounding");
    CHECK(fp32_to_fp16(1.0f + 1.0f / 2048) == 0x3c00 && fp32_to_fp16(1.0f + 3.0f / 2048) == 0x3c02, "fp16 ties to even");
    CHECK(fp32_to_fp16(5.9604645e-08f) == 1 && fp32_to_fp16(2.98e-08f) == 0, "fp16 subnormals");
    CHECK(fp32_to_bf16(1.00390625f) == 0x3f80 && fp32_to_bf16(1.01171875f) == 0x3f82, "bf16 ties to even");
    CHECK(bf16_to_fp32(0x3f80) == 1.0f, "bf16");
}

int main(void) {
    gguf_file f;
    char err[512];
    if (gguf_open(&f, "tests/fixtures/gguf_types.gguf", err, sizeof err)) {
        fprintf(stderr, "FAIL: %s\n", err);
        return 1;
    }
    test_metadata(&f);
    test_dequant(&f);
    gguf_close(&f);
    test_v2();
    test_writer();
    test_bad();
    test_fp16();
    if (fails) {
        fprintf(stderr, "%d checks failed\n", fails);
        return 1;
    }
    printf("test_gguf: all checks passed\n");
    return 0;
}
