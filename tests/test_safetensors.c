/* tests/test_safetensors.c: the safetensors reader and writer. Fixtures from
 * tools/ref_gguf.py (checked there with the `safetensors` package): tensor
 * table, F32/F16/BF16 values equal to the same tensors in the GGUF fixture,
 * sharded sets through the index, writer output byte-identical to the
 * fixture, shard writing, and truncated / corrupted / hostile headers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "safetensors.h"
#include "util.h"

#include "check.h"

/* tensor `hf` of the safetensors file equals `gg` of the GGUF file bitwise */
static void same_values(const st_file *sf, const char *hf, const gguf_file *g, const char *gg, int want_dtype) {
    char err[512];
    const st_tensor *t = st_find(sf, hf);
    const gguf_tensor *u = gguf_find_tensor(g, gg);
    CHECK(t && u, "%s / %s present", hf, gg);
    if (!t || !u) return;
    CHECK(t->dtype == want_dtype, "%s dtype %s", hf, st_dtype_name(t->dtype));
    CHECK(t->n_elems == u->n_elems, "%s numel", hf);
    /* PyTorch shape is the reverse of GGUF ne */
    for (int d = 0; d < t->ndim; d++) CHECK(t->shape[d] == u->ne[t->ndim - 1 - d], "%s dim %d", hf, d);
    float *a = malloc(t->n_elems * 4), *b = malloc(u->n_elems * 4);
    CHECK(st_tensor_to_f32(sf, t, a, err, sizeof err) == 0, "%s", err);
    CHECK(gguf_tensor_to_f32(g, u, b, err, sizeof err) == 0, "%s", err);
    CHECK(!memcmp(a, b, t->n_elems * 4), "%s values differ from GGUF %s", hf, gg);
    free(a);
    free(b);
}

static void test_read(void) {
    char err[512];
    st_file f;
    gguf_file g;
    CHECK(st_open(&f, "tests/fixtures/hf_tiny_qwen2/model.safetensors", err, sizeof err) == 0, "%s", err);
    CHECK(gguf_open(&g, "tests/fixtures/gguf_tiny_qwen2.gguf", err, sizeof err) == 0, "%s", err);
    CHECK(f.n == 14, "qwen2 tensors %d", f.n);
    const st_tensor *e = st_find(&f, "model.embed_tokens.weight");
    CHECK(e && e->ndim == 2 && e->shape[0] == 272 && e->shape[1] == 64, "embed shape");
    same_values(&f, "model.embed_tokens.weight", &g, "token_embd.weight", ST_F16);
    same_values(&f, "model.layers.0.self_attn.v_proj.weight", &g, "blk.0.attn_v.weight", ST_BF16);
    same_values(&f, "model.layers.0.self_attn.o_proj.weight", &g, "blk.0.attn_output.weight", ST_F32);
    same_values(&f, "model.layers.0.self_attn.q_proj.bias", &g, "blk.0.attn_q.bias", ST_F32);
    gguf_close(&g);
    st_close(&f);

    st_set s;
    CHECK(st_set_open(&s, "tests/fixtures/hf_tiny_llama", err, sizeof err) == 0, "%s", err);
    CHECK(s.n_files == 2, "llama shards %d", s.n_files);
    const st_file *file = NULL;
    const st_tensor *t = st_set_find(&s, "lm_head.weight", &file);
    CHECK(t && file == &s.files[1] && t->shape[0] == 272, "lm_head in shard 2");
    t = st_set_find(&s, "model.embed_tokens.weight", &file);
    CHECK(t && file == &s.files[0], "embed in shard 1");
    CHECK(st_set_find(&s, "nope", NULL) == NULL, "absent tensor");
    st_set_close(&s);
    CHECK(st_set_open(&s, "tests/fixtures", err, sizeof err) == -1 && strstr(err, "no model.safetensors"), "%s", err);
    /* shards without an index: every *.safetensors of the directory */
    char dir[256], cmd[800];
    snprintf(dir, sizeof dir, "%s/rft_test_st_noindex_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", getpid());
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp tests/fixtures/hf_tiny_llama/*.safetensors %s/", dir, dir);
    CHECK(system(cmd) == 0, "copy shards");
    CHECK(st_set_open(&s, dir, err, sizeof err) == 0 && s.n_files == 2 && st_set_find(&s, "lm_head.weight", NULL), "%s", err);
    st_set_close(&s);
    snprintf(cmd, sizeof cmd, "cp tests/fixtures/hf_tiny_llama/model-00002-of-00002.safetensors %s/dup.safetensors", dir);
    CHECK(system(cmd) == 0, "copy dup");
    CHECK(st_set_open(&s, dir, err, sizeof err) == -1 && strstr(err, "is in both"), "%s", err);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

static void tmpdir_make(char *d, size_t n, const char *tag) {
    snprintf(d, n, "%s/rft_test_st_%s_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", tag, getpid());
    mkdir(d, 0755);
}

static void test_write(void) {
    char err[512], dir[256], path[512];
    st_file f;
    CHECK(st_open(&f, "tests/fixtures/hf_tiny_qwen2/model.safetensors", err, sizeof err) == 0, "%s", err);
    st_wtensor *w = calloc((size_t)f.n, sizeof *w);
    for (int i = 0; i < f.n; i++) {
        w[i].name = f.t[i].name;
        w[i].dtype = f.t[i].dtype;
        w[i].ndim = f.t[i].ndim;
        memcpy(w[i].shape, f.t[i].shape, sizeof w[i].shape);
        w[i].data = f.t[i].data;
    }
    tmpdir_make(dir, sizeof dir, "w");
    snprintf(path, sizeof path, "%s/one.safetensors", dir);
    CHECK(st_write(path, w, f.n, err, sizeof err) == 0, "%s", err);
    size_t n1, n2;
    char *a = read_file(path, &n1, err, sizeof err);
    char *b = read_file("tests/fixtures/hf_tiny_qwen2/model.safetensors", &n2, err, sizeof err);
    CHECK(a && b && n1 == n2 && !memcmp(a, b, n1), "writer output differs from the fixture (%zu vs %zu bytes)", n1, n2);
    free(a);
    free(b);
    unlink(path);
    /* shards of at most 40 kB, read back as a set */
    CHECK(st_write_dir(dir, w, f.n, 40000, err, sizeof err) == 0, "%s", err);
    st_set s;
    CHECK(st_set_open(&s, dir, err, sizeof err) == 0, "%s", err);
    CHECK(s.n_files >= 2, "shards written: %d", s.n_files);
    for (int i = 0; i < f.n; i++) {
        const st_tensor *t = st_set_find(&s, f.t[i].name, NULL);
        CHECK(t && t->nbytes == f.t[i].nbytes && !memcmp(t->data, f.t[i].data, t->nbytes), "shard tensor %s", f.t[i].name);
    }
    snprintf(path, sizeof path, "%s", s.files[0].path);
    st_set_close(&s);
    /* a single-file export over the sharded one removes the stale index and shards */
    CHECK(access(path, F_OK) == 0, "shard %s written", path);
    CHECK(st_write_dir(dir, w, f.n, 0, err, sizeof err) == 0, "%s", err);
    CHECK(access(path, F_OK) != 0, "stale shard %s removed", path);
    CHECK(st_set_open(&s, dir, err, sizeof err) == 0 && s.n_files == 1, "single file after re-export: %s", err);
    st_set_close(&s);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    unlink(path);
    rmdir(dir);
    free(w);
    st_close(&f);
}

static void test_bad(void) {
    char err[512];
    size_t n;
    char *buf = read_file("tests/fixtures/hf_tiny_qwen2/model.safetensors", &n, err, sizeof err);
    if (!buf) {
        CHECK(0, "%s", err);
        return;
    }
    uint64_t hl;
    memcpy(&hl, buf, 8);
    st_file f;
    int rejected = 0;
    for (size_t len = 0; len < n; len += len < hl + 8 ? 1 : 1001) {
        char *c = malloc(len ? len : 1);
        memcpy(c, buf, len);
        int r = st_parse(&f, c, len, "trunc.safetensors", err, sizeof err);
        if (r == 0) st_close(&f);
        else rejected += strncmp(err, "trunc.safetensors: ", 19) == 0;
        CHECK(r != 0, "truncation to %zu accepted", len);
        free(c);
    }
    printf("truncations rejected: %d\n", rejected);
    char *c = malloc(n);
    rejected = 0;
    for (size_t pos = 0; pos < hl + 8; pos++) {
        static const char vals[] = {'9', '"', '\0', '-'};
        for (int v = 0; v < 4; v++) {
            memcpy(c, buf, n);
            if (c[pos] == vals[v]) continue;
            c[pos] = vals[v];
            if (st_parse(&f, c, n, "corrupt.safetensors", err, sizeof err) == 0) {
                for (int i = 0; i < f.n; i++)
                    CHECK(f.t[i].data + f.t[i].nbytes <= (uint8_t *)c + n, "tensor past the end accepted");
                st_close(&f);
            } else {
                rejected++;
                CHECK(!strchr(err, '\n') && !strncmp(err, "corrupt.safetensors: ", 21), "error: %s", err);
            }
        }
    }
    printf("header corruptions rejected: %d\n", rejected);
    free(c);
    /* hand-made hostile headers */
    struct {
        const char *json, *want;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8000]}}", "outside"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,8]}}", "absurd"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "do not match"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{}}", "JSON"},
        {"[1,2]", "not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", "dimension"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t img[256] = {0};
        uint64_t L = strlen(cases[k].json);
        memcpy(img, &L, 8);
        memcpy(img + 8, cases[k].json, L);
        int r = st_parse(&f, img, 8 + L + 8, "h.safetensors", err, sizeof err);
        if (r == 0) st_close(&f);
        CHECK(r == -1 && strstr(err, cases[k].want), "case %zu: %s", k, r ? err : "accepted");
    }
    uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    CHECK(st_parse(&f, big, sizeof big, "big.safetensors", err, sizeof err) == -1 && strstr(err, "header length"), "%s", err);
    /* an I64 tensor parses but is refused as weights */
    const char *j = "{\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}";
    uint8_t img[128] = {0};
    uint64_t L = strlen(j);
    memcpy(img, &L, 8);
    memcpy(img + 8, j, L);
    CHECK(st_parse(&f, img, 8 + L + 8, "i64.safetensors", err, sizeof err) == 0, "%s", err);
    float out[2];
    CHECK(st_tensor_to_f32(&f, &f.t[0], out, err, sizeof err) == -1 && strstr(err, "I64"), "%s", err);
    st_close(&f);
    free(buf);
}

int main(void) {
    test_read();
    test_write();
    test_bad();
    if (fails) {
        fprintf(stderr, "%d checks failed\n", fails);
        return 1;
    }
    printf("test_safetensors: all checks passed\n");
    return 0;
}
